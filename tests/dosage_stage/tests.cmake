# The dosage stage (SPEC.md section 5) of pertscore run and the pertscore dosage
# command; the simulator's dosage design; tools/pertscore-plot.
# Check 2: designed ED50s recovered (class of >= 90% of the fitted perturbations,
# Spearman of ED50s >= 0.8), with given and with selected targets.
ps_add_script_test(dosage_design dosage_stage/design.sh "truth;dosage")
# Check 3: the same dosage results on np 1, 2, 3 (run: statuses and classes equal,
# numbers within 1e-6 as PS differ by rounding; pertscore dosage on one results
# file: bit for bit, and equal to run's); --score-all-cells, --unit guide,
# --no-dosage, pertscore dosage writing over its own input.
ps_add_script_test(dosage_ranks dosage_stage/ranks.sh "mpi;dosage")
# Check 4: tools/pertscore-plot writes non-empty PNGs (a run, a lambda results file,
# a pertscore cv file).
ps_add_script_test(dosage_plots dosage_stage/plots.sh "plots")
