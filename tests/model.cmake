# model.cmake: the ResNet model module (infer/model/: builder, planner, memory, forward and backward).
#   test_resnet_model   names, layer and parameter counts, output sizes, freezing, init,
#                       backward stopping at the delimiting layer, parameter copies host <->
#                       device round-tripping exactly (C only, no oracle)
#   test_resnet_parity  forward features and every gradient against PyTorch 1.13 for
#                       torchvision resnet18/50 and Keras resnet50/resnet50v2 (python oracle:
#                       torch_resnet_fixture writes the HDF5 fixtures into the test directory)
#   test_resnet_memory  the training activations arena against the tensors autograd saves,
#                       residual adds in place; an inference model without gradient memory,
#                       backward on it refused (C only, no oracle)
#   test_resnet_add_grad  a BN read only by a residual add takes the add's gradient and ReLU
#                       mask itself: its parameter gradients equal relu_backward + bn_backward
#                       bit for bit (C only, no oracle)
st_add_test(NAME test_resnet_model SOURCES test_resnet_model.c LIBS st_train LABELS cpu)

st_add_script_test(NAME torch_resnet_fixture
                   COMMAND ${ST_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/torch_resnet.py .
                   LABELS python)
set_tests_properties(torch_resnet_fixture PROPERTIES FIXTURES_SETUP resnet_torch)
st_add_test(NAME test_resnet_parity SOURCES test_resnet_parity.c LIBS st_train LABELS python)
set_tests_properties(test_resnet_parity PROPERTIES FIXTURES_REQUIRED resnet_torch)
st_add_test(NAME test_resnet_memory SOURCES test_resnet_memory.c LIBS st_train LABELS cpu)
st_add_test(NAME test_resnet_add_grad SOURCES test_resnet_add_grad.c LIBS st_train LABELS cpu)
