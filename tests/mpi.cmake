# mpi.cmake: multi-process runs under `mpirun -np N` (kernels/comm.h; docs/scaling.md), on the CPU
# backend with --oversubscribe, 1 thread per rank. Both skip (77) without mpirun or h5diff, and
# fail instead under SIMTUNE_REQUIRE_ORACLES=1 (CI).
#   mpi_equivalence  data-parallel train on 2 ranks = 1 process (losses, weights) for cross-entropy
#                    and batch-hard triplet; --resume with another rank count; a rank count that
#                    does not divide the batch and mismatched configs refused; sync_bn (training
#                    batch norms with the global batch's statistics = one process; without it,
#                    not). ~47 s on 2 cores shared with another build (95 s at load average 12).
#   mpi_shards       embed and topk on 3 ranks write files identical to one process's; the binary
#                    needs no libmpi for one process. ~17 s idle (47 s at load 12).
st_add_script_test(NAME mpi_equivalence
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/mpi_equivalence.py $<TARGET_FILE:make_synthetic>)
st_add_script_test(NAME mpi_shards
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/mpi_shards.py $<TARGET_FILE:make_synthetic>)
set_tests_properties(mpi_equivalence mpi_shards PROPERTIES TIMEOUT 300)
# mpi_failures: a rank stopped (SIGSTOP) ends the job through the watchdog (SIMTUNE_COMM_TIMEOUT=10)
# naming the waiting rank, a rank killed (SIGKILL) is named by mpirun, SIGTERM to both ranks stops
# them after the same step with one checkpoint, and every run resumes from rank 0's checkpoints.
# ~35 s idle.
st_add_script_test(NAME mpi_failures
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/mpi_failures.py $<TARGET_FILE:make_synthetic>)
set_tests_properties(mpi_failures PROPERTIES TIMEOUT 300)
# mpi_sweep_groups: `mpirun -np 4 simtune sweep` with ranks_per_trial 2 (two groups, each trial
# data parallel on 2 ranks) gives one process's leaderboard; a failed evaluation ends leader and
# member at once; N not a multiple of G, and G not dividing the batch, are refused with the
# numbers. ~42 s on 2 cores at load 1.
st_add_script_test(NAME mpi_sweep_groups
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/mpi_sweep_groups.py $<TARGET_FILE:make_synthetic>)
set_tests_properties(mpi_sweep_groups PROPERTIES TIMEOUT 300)
