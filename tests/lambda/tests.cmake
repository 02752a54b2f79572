# pertscore lambda (SPEC.md section 4): the FPR curve over the whole grid, the
# chosen lambda, rank independence, the user grid and the "none reaches the
# target" report.
ps_add_script_test(lambda_scan lambda/lambda.sh "mpi")
# groups: --group-by equal to lambda on each group's cells alone, --control-by rank-independent, np 1-3
ps_add_script_test(lambda_groups lambda/groups.sh "mpi")
