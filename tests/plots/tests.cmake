# tools/pertscore-plot: every plot kind in PNG, PDF and SVG, legends and notes in the SVG text.
ps_add_script_test(plots_kinds plots/plots.sh "plots")
