# Real data with reference results (../shared/data, read in place).
ps_add_script_test(realdata_scmageck_demo realdata/scmageck_demo.sh "realdata;mpi")
