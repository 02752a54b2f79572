# Error handling: broken inputs give a clear error on 2 ranks, no output, no hang.
ps_add_script_test(errors_run errors/errors.sh "errors;badinput")
