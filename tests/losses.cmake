# losses.cmake: tests of the losses (cross-entropy, triplet), the optimizers and the LR
# schedules: kernel level (kernels/cpu/{xent,triplet,optim}.c), the trainer's loss layer
# (train/loss.c) and optimizer (train/optim.c). Owner: the losses helper.

# Pure C: the worked examples of docs/algorithms.md B.5/B.7, finite differences, tie-breaking,
# duplicated and collapsed embeddings.
st_add_test(NAME test_loss_kernels SOURCES test_loss_kernels.c LIBS st_kernels LABELS cpu)

# PyTorch 1.13 oracle: the generator writes the fixtures, the C tests compare against them.
st_add_script_test(NAME torch_losses_fixture
                   COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/torch_losses.py
                   LABELS python)
set_tests_properties(torch_losses_fixture PROPERTIES FIXTURES_SETUP losses_torch)
st_add_test(NAME test_losses_torch SOURCES test_losses_torch.c LIBS st_kernels LABELS python)
st_add_test(NAME test_optim_torch SOURCES test_optim_torch.c LIBS st_train LABELS python)
set_tests_properties(test_losses_torch test_optim_torch PROPERTIES FIXTURES_REQUIRED losses_torch)

# The trainer's loss layer and optimizer on hand-built models (no ResNet builder needed).
st_add_test(NAME test_train_loss SOURCES test_train_loss.c LIBS st_train LABELS cpu)
st_add_test(NAME test_train_optim SOURCES test_train_optim.c LIBS st_train LABELS cpu)

# Loss + backward + optimizer on a real tv_resnet18 (32x32, batch 8): the loss must fall on a
# fixed batch. ~8 s of CPU time (16 training steps).
st_add_test(NAME test_train_small_model SOURCES test_train_small_model.c LIBS st_train LABELS cpu)
