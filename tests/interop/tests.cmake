# Interop with the python AnnData ecosystem (python3-anndata, h5py, h5dump):
# every input layout and guide format gives the same scores; results read back.
ps_add_script_test(interop_formats interop/formats.sh "interop")
