# --permutations-adaptive (issue 17): Besag-Clifford p-values against a numpy
# reimplementation of the stopping rule on the fixed run's exceedances, valid under
# the null, the fixed decisions at 0.01 / 0.05, identical on 1-3 ranks; the fused
# X^T Y_r (one pass over Y per batch) bitwise one pass per permutation.
ps_add_script_test(perm_adaptive perm/adaptive.sh "mpi")
