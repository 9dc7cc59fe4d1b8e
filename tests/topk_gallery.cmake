# The top-k gallery opened once (infer/topk.h st_topk_gallery_*): resident vs streamed, bit for bit.
st_add_test(NAME test_topk_gallery SOURCES test_topk_gallery.c LIBS st_infer)
