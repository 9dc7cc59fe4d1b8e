# trainer.cmake: tests of the trainer (train/trainer.c, cmd/train.c). Owner: trainer-tests.
# All train tv_resnet18 at 32x32 on generated images (data/synthetic.h) written into the test
# directory. Wall times on 2 idle cores: loss 4 s, freeze 2 s, resume 8 s, steps 7 + 1 s, cli
# 6 s, orl 19 s (5-20x that at load average 10).
#   test_trainer_loss     st_train_run: the train loss falls far below ln K (48 steps)
#   test_trainer_freeze   freeze_until: frozen weights and BN statistics stay bit-identical
#   test_trainer_resume   epoch-end and mid-epoch resume are bit-identical to a straight run
st_add_test(NAME test_trainer_loss SOURCES test_trainer_loss.c LIBS st_train LABELS cpu)
st_add_test(NAME test_trainer_freeze SOURCES test_trainer_freeze.c LIBS st_train LABELS cpu)
st_add_test(NAME test_trainer_resume SOURCES test_trainer_resume.c LIBS st_train LABELS cpu)

# PyTorch 1.13 parity of the first 10 SGD losses (python oracle writes trainer_steps.h5).
st_add_script_test(NAME torch_train_steps_fixture
                   COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/torch_train_steps.py .
                   LABELS python)
set_tests_properties(torch_train_steps_fixture PROPERTIES FIXTURES_SETUP trainer_steps_torch)
st_add_test(NAME test_trainer_steps SOURCES test_trainer_steps.c LIBS st_train LABELS python)
set_tests_properties(test_trainer_steps PROPERTIES FIXTURES_REQUIRED trainer_steps_torch)

# `simtune train` through the binary: --help, usage and config errors, divergence, Ctrl-C and
# --resume, --resume --epochs extension, output.keep_last, --check, default run names
# (tests/test_trainer_cli.py) on 6 x 8 generated 40x40 images written by make_synthetic
# (tests/sweep_e2e.cmake).
st_add_script_test(NAME trainer_cli_data COMMAND $<TARGET_FILE:make_synthetic> cli_data 6 8 40 40 17 0 0)
set_tests_properties(trainer_cli_data PROPERTIES FIXTURES_SETUP trainer_cli_data)
st_add_script_test(NAME test_trainer_cli COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_trainer_cli.py)
set_tests_properties(test_trainer_cli PROPERTIES FIXTURES_REQUIRED trainer_cli_data)

# End to end on the shared datasets (skips without them): base on COIL-100, exported, reloaded,
# triplet fine-tune on ORL s1..s30; held-out s31..s40 mAP@10 must improve.
st_add_test(NAME test_trainer_orl SOURCES test_trainer_orl.c LIBS st_train LABELS slow)

# Which images train and validate (tests/test_trainer_validation.py) on the shared ORL and
# COIL-100 (exit 77 without them): open-set (data.val_classes) vs closed-set numbers for the same
# model, split files written on first use, strategies cross and sequential. ~20 s of CPU.
st_add_script_test(NAME test_trainer_validation COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/test_trainer_validation.py)
