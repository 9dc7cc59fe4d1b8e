# tests/sweep_e2e.cmake: `simtune sweep` end to end with the real trainer on a generated dataset.
#
# make_synthetic: writes a deterministic synthetic image dataset (data/synthetic.h) from the
# command line; any script test may use it ($<TARGET_FILE:make_synthetic>).
# sweep_e2e (slow): a 2-bracket Hyperband sweep of tv_resnet18 triplet trials, its leaderboard
# against each trial's metrics.jsonl, and `simtune train --config best.yaml` reproducing the
# leader's metric exactly (tests/sweep_e2e.py).

add_executable(make_synthetic make_synthetic.c)
target_include_directories(make_synthetic PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_options(make_synthetic PRIVATE ${ST_WARNINGS})
target_link_libraries(make_synthetic PRIVATE st_data)

st_add_script_test(NAME sweep_e2e
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/sweep_e2e.py $<TARGET_FILE:make_synthetic>
  LABELS slow)
# 60-115 s measured on 2 shared cores at load average 6-10; the timeout only catches a hang
set_tests_properties(sweep_e2e PROPERTIES TIMEOUT 600)

# test_lock: folder locks (train/lock.h) between processes, stale and foreign-host lock files.
st_add_test(NAME test_lock SOURCES test_lock.c LIBS st_train)

# sweep_locks: two processes on one run folder / sweep folder through the CLI (the second is
# refused naming the first), and a stale lock after kill -9 taken over by --resume.
st_add_script_test(NAME sweep_locks
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/sweep_locks.py $<TARGET_FILE:make_synthetic>)

# sweep_examples: every `simtune sweep` example of --help, README.md, docs/config.md (Sweeps) and
# configs/sweep_example.yaml runs as written (the training one at small sizes); --dry-run and a
# real run refuse a missing weight file before training.
st_add_script_test(NAME sweep_examples
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/sweep_examples.py)

# sweep_workers (slow): one sweep folder worked on by several processes: two `--worker`s and
# `mpirun -np 2` give one process's leaderboard, a worker killed mid-trial is re-queued and its
# trial continued from its checkpoint, kill -9 of all + --resume loses no finished evaluation,
# asha completes, and single processes and workers refuse each other (tests/sweep_workers.py).
st_add_script_test(NAME sweep_workers
  COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/sweep_workers.py $<TARGET_FILE:make_synthetic>
  LABELS slow)
# 68-102 s measured on 2 shared cores (load average 5-13); the timeout only catches a hang
set_tests_properties(sweep_workers PROPERTIES TIMEOUT 600)

# sweep_queue_locks: the flock primitives of the workers' queue (train/lock.h) between processes.
st_add_test(NAME sweep_queue_locks SOURCES sweep_queue_locks.c LIBS st_train)
