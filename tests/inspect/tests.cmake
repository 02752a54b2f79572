# pertscore inspect: results summary (parameters, var head, calls) and 10x .h5 recognition.
ps_add_script_test(inspect inspect/inspect.sh "interop")
