# Expected values for tests/dosage/test_dosage.c (SPEC.md section 5). Run once from
# the repository root and commit the TSVs (the test reads them; R is not needed at
# test time):
#   Rscript tests/dosage/make_expected.R
# Base R only: drc is not installed here, so the LL.4 reference is nls() on drc's
# formula in the parameters (b, c, d, log e), started at the true values.
#   hill_cases.tsv     noisy LL.4 points and nls's fit (canonical form d >= c)
#   pipeline_cases.tsv simulated cells: normalization, cut(unique(quantile)) bins,
#                      bin means, nls on them, Hill(0) - Hill(1)
#   cor_cases.tsv      cor.test pearson and spearman (exact = FALSE) r and p
#   pt_cases.tsv       pt(t, df) in both tails
set.seed(20250301)
if (!dir.exists("tests/dosage")) stop("run from the repository root (/work/main)")

f17 <- function(v) paste(sprintf("%.17g", v), collapse = ",")
hill <- function(x, b, c, d, e) c + (d - c) / (1 + exp(b * (log(x) - log(e))))

# LL.4 in (b, c, d, le = log e) with its analytic gradient for nls: numeric
# derivatives stall nls's convergence criterion near 1e-7, analytic ones reach
# ~1e-10. At x = 0 the b and le derivatives are 0 (the x -> 0 limit; the plain
# formula would give 0 * -Inf = NaN there).
ll4 <- function(x, b, c, d, le) {
  h <- 1 / (1 + exp(b * (log(x) - le)))
  s <- h * (1 - h)
  lx <- ifelse(x > 0, log(x) - le, 0)
  val <- c + (d - c) * h
  attr(val, "gradient") <- cbind(b = -(d - c) * s * lx, c = 1 - h, d = h, le = (d - c) * s * b)
  val
}

# nls from the true values; canonical form d >= c afterwards.
fit_nls <- function(x, y, start) {
  st <- list(b = start[1], c = start[2], d = start[3], le = log(start[4]))
  fit <- NULL
  for (tol in c(1e-9, 1e-7)) {
    fit <- tryCatch(nls(y ~ ll4(x, b, c, d, le), start = st,
                        control = nls.control(maxiter = 1000, tol = tol, minFactor = 1e-14)),
                    error = function(err) NULL)
    if (!is.null(fit)) break
  }
  if (is.null(fit)) {
    # not from the truth (bin means of noisy cells): the best of a small grid of starts
    best <- Inf
    for (b0 in c(0.5, 1, 2, 4, 8)) for (e0 in quantile(x[x > 0], c(0.2, 0.4, 0.6, 0.8))) {
      f <- tryCatch(nls(y ~ ll4(x, b, c, d, le), start = list(b = b0, c = min(y), d = max(y), le = log(e0)),
                        control = nls.control(maxiter = 1000, tol = 1e-9, minFactor = 1e-14)),
                    error = function(err) NULL)
      if (!is.null(f) && sum(residuals(f)^2) < best) { best <- sum(residuals(f)^2); fit <- f; tol <- 1e-9 }
    }
  }
  if (is.null(fit)) stop("nls failed")
  p <- coef(fit)
  out <- c(b = unname(p["b"]), c = unname(p["c"]), d = unname(p["d"]), e = exp(unname(p["le"])),
           sse = sum(residuals(fit)^2), tol = tol)
  if (out["d"] < out["c"]) out[c("b", "c", "d")] <- c(-out["b"], out["d"], out["c"])
  out
}

# ---------------- hill_cases.tsv ----------------
hill_lines <- "name\tn\tx\ty\ttrue_b\ttrue_c\ttrue_d\ttrue_e\tb\tc\td\te\tsse\tnls_tol"
add_hill <- function(name, x, truth, sd) {
  y <- hill(x, truth[1], truth[2], truth[3], truth[4]) + rnorm(length(x), 0, sd)
  r <- fit_nls(x, y, truth)
  hill_lines <<- c(hill_lines, paste(name, length(x), f17(x), f17(y), f17(truth[1]), f17(truth[2]),
                                     f17(truth[3]), f17(truth[4]), f17(r["b"]), f17(r["c"]), f17(r["d"]),
                                     f17(r["e"]), f17(r["sse"]), r["tol"], sep = "\t"))
}
# x like ten decile means of a normalized expression (0 .. ~1.5), sorted
bin_x <- function(n = 10, lo = 0.03, hi = 1.4) sort(exp(seq(log(lo), log(hi), length.out = n) + rnorm(n, 0, 0.05)))

add_hill("decreasing_e0.3", bin_x(), c(2, 0.05, 0.9, 0.3), 0.02)
add_hill("decreasing_e0.7", bin_x(), c(3, 0.1, 1.0, 0.7), 0.03)
add_hill("decreasing_e1.2", bin_x(), c(1.5, 0.0, 0.8, 1.2), 0.02)
add_hill("decreasing_e0.1", bin_x(lo = 0.01), c(1.2, 0.1, 0.95, 0.1), 0.02)
add_hill("decreasing_steep", bin_x(), c(8, 0.05, 0.85, 0.45), 0.02)
add_hill("increasing_e0.5", bin_x(), c(-2, 0.1, 0.9, 0.5), 0.03)
add_hill("increasing_e1.5", bin_x(lo = 0.1, hi = 2.5), c(-1.5, 0.2, 0.7, 1.5), 0.02)
add_hill("shallow", bin_x(), c(0.8, -0.1, 0.9, 0.4), 0.02)
add_hill("noisy", bin_x(), c(2.5, 0.0, 1.0, 0.5), 0.06)
add_hill("five_points", bin_x(5, 0.05, 1.2), c(2, 0.1, 0.9, 0.4), 0.01)
add_hill("six_points", bin_x(6, 0.05, 1.3), c(-3, 0.0, 0.8, 0.6), 0.02)
add_hill("seven_points", bin_x(7, 0.04, 1.3), c(1.8, 0.05, 0.7, 0.35), 0.02)
add_hill("x_has_zero", c(0, bin_x(9, 0.08, 1.4)), c(2, 0.1, 0.9, 0.5), 0.02)
add_hill("negative_ps", bin_x(), c(1.5, -0.3, 0.6, 0.5), 0.03)
for (i in 1:12) {
  b <- sample(c(-1, 1), 1) * runif(1, 0.7, 6)
  e <- exp(runif(1, log(0.1), log(2)))
  c0 <- runif(1, -0.1, 0.3)
  add_hill(sprintf("random_%02d", i), bin_x(sample(8:10, 1), 0.03, 2.5), c(b, c0, c0 + runif(1, 0.3, 1), e),
           runif(1, 0.005, 0.04))
}
writeLines(hill_lines, "tests/dosage/hill_cases.tsv")

# ---------------- pipeline_cases.tsv ----------------
pipe_lines <- "name\tn\tn_control\tmin\tmedian\tn_bins\tbin_x\tbin_ps\tbin_count\tb\tc\td\te\thill0\thill1\town\tps\tcontrol"
lognorm <- function(counts) log1p(1e4 * counts / round(runif(length(counts), 3000, 7000)))
add_pipe <- function(name, n, n_control, mu, truth, sd, kd_shape = c(1.2, 1.5)) {
  control <- lognorm(rpois(n_control, mu))
  kd <- rbeta(n, kd_shape[1], kd_shape[2]) * 1.3         # remaining fraction of expression
  own <- lognorm(rpois(n, mu * kd))
  mn <- min(c(own, control))
  md <- median(control)
  x <- (own - mn) / (md - mn)
  xk <- log1p(2 * mu * kd) / log1p(2 * mu)                # expected x of that fraction (1e4 / 5000 = 2)
  ps <- hill(pmax(xk, 1e-3), truth[1], truth[2], truth[3], truth[4]) + rnorm(n, 0, sd)
  br <- unique(quantile(x, 0:10 / 10))
  bin <- cut(x, br, include.lowest = TRUE)
  cnt <- as.vector(table(bin))
  keep <- cnt > 0
  mx <- as.vector(tapply(x, bin, mean))[keep]
  mp <- as.vector(tapply(ps, bin, mean))[keep]
  r <- fit_nls(mx, mp, truth)
  h0 <- if (r["b"] > 0) r["d"] else r["c"]
  h1 <- hill(1, r["b"], r["c"], r["d"], r["e"])
  pipe_lines <<- c(pipe_lines, paste(name, n, n_control, f17(mn), f17(md), sum(keep), f17(mx), f17(mp),
                                     paste(cnt[keep], collapse = ","), f17(r["b"]), f17(r["c"]), f17(r["d"]),
                                     f17(r["e"]), f17(h0), f17(h1), f17(own), f17(ps), f17(control), sep = "\t"))
}
add_pipe("buffered", 400, 600, 30, c(2.5, 0.05, 0.95, 0.3), 0.08)
add_pipe("sensitive", 500, 600, 40, c(3, 0.0, 0.9, 0.8), 0.08)
add_pipe("weak_response", 300, 500, 25, c(2, 0.3, 0.45, 0.5), 0.05)
add_pipe("low_expression", 350, 700, 6, c(2, 0.05, 0.8, 0.5), 0.05)
add_pipe("even_controls", 250, 400, 20, c(1.5, 0.1, 0.9, 0.6), 0.06)
writeLines(pipe_lines, "tests/dosage/pipeline_cases.tsv")

# ---------------- cor_cases.tsv ----------------
cor_lines <- "name\tn\tpearson_r\tpearson_p\tspearman_r\tspearman_p\tx\ty"
add_cor <- function(name, x, y) {
  pe <- cor.test(x, y, method = "pearson")
  sp <- suppressWarnings(cor.test(x, y, method = "spearman", exact = FALSE))
  cor_lines <<- c(cor_lines, paste(name, length(x), f17(pe$estimate), f17(pe$p.value), f17(sp$estimate),
                                   f17(sp$p.value), f17(x), f17(y), sep = "\t"))
}
corr <- function(n, rho, digits = NA) {
  x <- rnorm(n)
  y <- rho * x + sqrt(1 - rho^2) * rnorm(n)
  if (!is.na(digits)) { x <- round(x, digits); y <- round(y, digits) }
  list(x = x, y = y)
}
for (spec in list(list("n3", 3, 0.5), list("n4", 4, -0.3), list("n10_strong", 10, -0.9),
                  list("n30_none", 30, 0), list("n100_weak", 100, -0.15), list("n100_moderate", 100, 0.4),
                  list("n500_strong", 500, -0.7), list("n1500_weak", 1500, -0.05),
                  list("n1000_strong", 1000, 0.6), list("n3000_tiny_p", 3000, -0.3))) {
  v <- corr(spec[[2]], spec[[3]])
  add_cor(spec[[1]], v$x, v$y)
}
v <- corr(300, -0.3, 1); add_cor("ties_rounded", v$x, v$y)
v <- corr(400, 0.2, 0); add_cor("heavy_ties_integers", v$x, v$y)
own <- lognorm(rpois(600, 3)); ps <- 0.8 - 0.2 * own + rnorm(600, 0, 0.3)
add_cor("ps_vs_sparse_expression", ps, own)
own <- lognorm(rpois(150, 0.5)); add_cor("mostly_zero_expression", rnorm(150), own)
add_cor("perfect_positive", 1:20 + 0, 2 * (1:20) + 1)
add_cor("perfect_negative_ranks", (1:15)^2, -(1:15))
add_cor("near_perfect", 1:50 + rnorm(50, 0, 1e-3), 1:50 + 0)
for (i in 1:15) {
  n <- sample(c(5:30, 80, 250, 600), 1)
  v <- corr(n, runif(1, -0.95, 0.95), sample(c(NA, NA, 1, 2), 1))
  add_cor(sprintf("random_%02d", i), v$x, v$y)
}
writeLines(cor_lines, "tests/dosage/cor_cases.tsv")

# ---------------- pt_cases.tsv ----------------
pt_lines <- "t\tdf\tlower\tupper"
for (df in c(1, 2, 3, 4.5, 10, 30, 98, 1000, 1e4, 1e5, 1e6))
  for (t in c(-1e8, -300, -40, -12, -5, -2.5, -1, -0.3, -1e-4, 0, 1e-6, 0.2, 1.5, 3, 7, 25, 150, 1e6))
    pt_lines <- c(pt_lines, paste(f17(t), f17(df), f17(pt(t, df)), f17(pt(t, df, lower.tail = FALSE)), sep = "\t"))
writeLines(pt_lines, "tests/dosage/pt_cases.tsv")

cat(sprintf("wrote %d hill, %d pipeline, %d correlation and %d pt cases (R %s)\n", length(hill_lines) - 1,
            length(pipe_lines) - 1, length(cor_lines) - 1, length(pt_lines) - 1, getRversion()))
