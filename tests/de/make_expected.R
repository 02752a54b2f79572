# Expected values for tests/de/test_de.c (SPEC.md section 1), written to
# tests/de/wilcoxon_cases.tsv. Run once from the repository root and commit the
# TSV (the test reads it; R is not needed at test time):
#   Rscript tests/de/make_expected.R
# Each case is a gene's values in P (x) and C (y), zeros included; the expected
# p-value is R's wilcox.test(x, y, exact = FALSE) (continuity correction on),
# the fold change and pct follow Seurat's FindMarkers as the SPEC states them.
set.seed(20250117)

out_file <- "tests/de/wilcoxon_cases.tsv"
if (!dir.exists("tests/de")) stop("run from the repository root (/work/main)")

# log-normalized expression like the pipeline's: y = ln(1 + 1e4 count / total)
lognorm <- function(n, mu, size = 1.5) {
  counts <- rnbinom(n, size = size, mu = mu)
  totals <- round(runif(n, 2000, 8000))
  log1p(1e4 * counts / totals)
}
# continuous values with a given zero fraction, optionally rounded (heavy ties)
zeroed <- function(n, pzero, meanlog = 0.5, digits = NA) {
  v <- rlnorm(n, meanlog, 0.6)
  if (!is.na(digits)) v <- round(v, digits)
  v[runif(n) < pzero] <- 0
  v
}
# k of n cells expressed, the others 0: pct = k / n (rounding ties of round(x, 3))
k_of_n <- function(k, n) {
  v <- numeric(n)
  v[sample.int(n, k)] <- round(rlnorm(k, 0.3, 0.5), 2)
  v
}

cases <- list()
add <- function(name, x, y) cases[[length(cases) + 1]] <<- list(name = name, x = x, y = y)

add("many_zeros", zeroed(60, 0.7), zeroed(240, 0.8))
add("many_zeros_counts", lognorm(200, 0.3), lognorm(500, 0.15))
add("heavy_ties_rounded", zeroed(80, 0.3, digits = 1), zeroed(120, 0.3, digits = 1))
add("heavy_ties_integers", zeroed(150, 0.2, 0.8, digits = 0), zeroed(400, 0.25, 0.8, digits = 0))
add("unequal_7_300", zeroed(7, 0.3, 1.0), zeroed(300, 0.5, 0.5))
add("unequal_300_7", zeroed(300, 0.5, 0.5), zeroed(7, 0.3, 1.0))
add("unequal_3_500_counts", lognorm(3, 2), lognorm(500, 0.5))
add("x_all_zero", numeric(40), zeroed(100, 0.5))
add("y_all_zero", zeroed(90, 0.6), numeric(250))
add("both_all_zero", numeric(12), numeric(30))
shared <- zeroed(50, 0.4, digits = 2)
add("identical_groups", shared, shared)
add("identical_multiset", shared, rev(shared))
add("identical_all_same_positive", rep(1.25, 5), rep(1.25, 8))
add("separation_up", 4 + abs(rnorm(60)), zeroed(600, 0.9, 0.0))
add("separation_down", zeroed(500, 0.95, 0.0), 3 + abs(rnorm(120)))
add("separation_extreme", 5 + runif(400), runif(800))
add("separation_tied_top", rep(2.5, 80), c(rep(0, 700), rep(2.5, 3)))
add("tiny_1_1", 1.5, 0)
add("tiny_1_1_tied", 0.7, 0.7)
add("tiny_1_2", 0.3, c(0, 0.9))
add("tiny_2_3_ties", c(0, 1.1), c(0, 0, 1.1))
add("tiny_2_2_zero", c(0, 0), c(0, 2))
add("tiny_3_4", c(0.2, 0.5, 0.9), c(0.1, 0.4, 0.6, 1.2))
add("dense_continuous", rlnorm(100, 0.6, 0.4), rlnorm(130, 0.5, 0.4))
near <- zeroed(300, 0.5, digits = 3)
add("near_zero_fold_change", near, c(near[-1], near[1] + 0.001))
add("large_sparse", lognorm(1500, 0.2), lognorm(3000, 0.18))
# pct rounding at exact halves of the third decimal: 1/2000, 3/2000, 1/16, 3/16, 1/400, 1/80, 1001/2000
add("pct_half_2000", k_of_n(1, 2000), k_of_n(3, 2000))
add("pct_half_16", k_of_n(1, 16), k_of_n(3, 16))
add("pct_half_16b", k_of_n(5, 16), k_of_n(7, 16))
add("pct_half_400_80", k_of_n(1, 400), k_of_n(1, 80))
add("pct_half_2000b", k_of_n(1001, 2000), k_of_n(999, 2000))
add("separation_underflow", 3 + runif(2000), numeric(4000)) # p underflows to 0 in R too
# a spread of random shapes
for (i in 1:30) {
  n1 <- sample(c(2:20, 50, 100, 400), 1)
  n2 <- sample(c(2:20, 50, 200, 700), 1)
  d <- sample(c(NA, 0, 1, 2), 1)
  add(sprintf("random_%02d", i), zeroed(n1, runif(1, 0, 0.95), rnorm(1, 0.3, 0.4), d),
      zeroed(n2, runif(1, 0, 0.95), rnorm(1, 0.3, 0.4), d))
}

fmt <- function(v) paste(sprintf("%.17g", v), collapse = ",")
lines <- "name\tn1\tn2\tp\tlog2fc\tpct1\tpct2\tx\ty"
for (cs in cases) {
  x <- cs$x
  y <- cs$y
  p <- suppressWarnings(wilcox.test(x, y, exact = FALSE)$p.value)
  log2fc <- log2(mean(expm1(x)) + 1) - log2(mean(expm1(y)) + 1)
  pct1 <- round(sum(x > 0) / length(x), 3)
  pct2 <- round(sum(y > 0) / length(y), 3)
  lines <- c(lines, paste(cs$name, length(x), length(y), sprintf("%.17g", p), sprintf("%.17g", log2fc),
                          sprintf("%.17g", pct1), sprintf("%.17g", pct2), fmt(x), fmt(y), sep = "\t"))
}
writeLines(lines, out_file)
cat(sprintf("wrote %d cases to %s (R %s)\n", length(cases), out_file, getRversion()))
