# trainer.cmake: tests of the trainer (train/trainer.c, train/cmd_train.c). Owner: trainer-tests.
# All train tv_resnet18 at 32x32 on generated images (data/synthetic.h) written into the test
# directory; a training step costs ~0.5 s of CPU there.
#   test_trainer_loss     st_train_run: the train loss falls far below ln K (48 steps)
#   test_trainer_freeze   freeze_until: frozen weights and BN statistics stay bit-identical
#   test_trainer_resume   epoch-end and mid-epoch resume are bit-identical to a straight run
st_add_test(NAME test_trainer_loss SOURCES test_trainer_loss.c LIBS st_train LABELS cpu)
st_add_test(NAME test_trainer_freeze SOURCES test_trainer_freeze.c LIBS st_train LABELS cpu)
st_add_test(NAME test_trainer_resume SOURCES test_trainer_resume.c LIBS st_train LABELS cpu)
