# read_pertscore(path): a pertscore results file (.h5ad) as R data.frames, with
# Debian's hdf5r (r-cran-hdf5r). Installed by `cmake --install` (tools/setup.sh) as
# /usr/local/share/pertscore/R/read_pertscore.R; use it with
#   source("/usr/local/share/pertscore/R/read_pertscore.R")
#   r <- read_pertscore("results.h5ad")
# Returns a list:
#   cells          one row per analysed cell (row names: cell names): role, perturbations,
#                  n_perturbations, perturbation (factor; the control label for control
#                  cells, '+'-joined at MOI > 1), guide, n_guides, ps (PS of the cell's
#                  perturbation, the largest at MOI > 1, NA for control cells),
#                  ps_perturbation, ps_pvalue; plus any other obs column of the file
#   long           one row per (cell, carried perturbation): cell, perturbation, guide,
#                  ps, ps_pvalue
#   perturbations  the var table, one row per perturbation (row names: labels)
#   beta           perturbations x regression genes (row / column names), the ridge coefficients
#   targets        data.frame(perturbation, gene): the target pairs
#   parameters     named list of uns/pertscore/parameters
# Files written by a pertscore that stores the per-cell columns in obs are read as
# they are; for older files they are computed from X and obs/perturbations (guide is
# then NA and n_guides the number of perturbations: those files hold no guide names).
# docs/user-guide.md "Reading the results in R" has the Seurat recipe (AddMetaData).

read_pertscore <- function(path) {
  if (!requireNamespace("hdf5r", quietly = TRUE))
    stop("read_pertscore needs the R package hdf5r (Debian: apt-get install r-cran-hdf5r)")
  if (!file.exists(path)) stop(sprintf("read_pertscore: %s: no such file", path))
  f <- tryCatch(hdf5r::H5File$new(path, mode = "r"),
                error = function(e) stop(sprintf("read_pertscore: %s: cannot open as HDF5 (%s)", path,
                                                 conditionMessage(e))))
  on.exit(f$close_all(), add = TRUE)
  has <- function(p) f$exists(p)
  for (p in c("X", "obs", "var", "uns/pertscore"))
    if (!has(p)) stop(sprintf("read_pertscore: %s: not a pertscore results file (no %s)", path, p))

  column <- function(node) {
    if (inherits(node, "H5Group")) {  # categorical: codes (0-based, -1 missing) + categories
      cats <- node[["categories"]]$read()
      codes <- as.integer(node[["codes"]]$read())
      # index with NA for -1: cats[0] would drop the element and shift every later one
      return(factor(cats[ifelse(codes < 0, NA_integer_, codes + 1L)], levels = cats))
    }
    v <- node$read()
    if (is.numeric(v)) v <- as.numeric(v)
    v
  }
  frame <- function(name) {
    g <- f[[name]]
    idx <- if (g$attr_exists("_index")) hdf5r::h5attr(g, "_index") else "_index"
    rn <- g[[idx]]$read()
    cols <- setdiff(names(g), idx)
    if (g$attr_exists("column-order")) {
      ord <- hdf5r::h5attr(g, "column-order")
      cols <- c(intersect(ord, cols), setdiff(cols, ord))
    }
    df <- data.frame(row.names = rn, check.names = FALSE, stringsAsFactors = FALSE)[seq_along(rn), , drop = FALSE]
    for (cn in cols) df[[cn]] <- column(g[[cn]])
    rownames(df) <- rn
    df
  }
  scalar_list <- function(name) {
    if (!has(name)) return(list())
    g <- f[[name]]
    out <- lapply(names(g), function(k) { v <- g[[k]]; if (inherits(v, "H5Group")) NULL else v$read() })
    names(out) <- names(g)
    out
  }

  obs <- frame("obs")
  var <- frame("var")
  n <- nrow(obs)
  K <- nrow(var)
  params <- scalar_list("uns/pertscore/parameters")
  control <- if (!is.null(params[["control"]])) params[["control"]] else "control"

  # X (CSR, cells x perturbations): entry (j, k) -> value, keyed j * K + k (0-based)
  indptr <- as.numeric(f[["X/indptr"]]$read())
  indices <- as.numeric(f[["X/indices"]]$read())
  xdata <- as.numeric(f[["X/data"]]$read())
  rows <- rep(seq_len(n) - 1, diff(indptr))
  xkey <- rows * K + indices
  pdata <- if (has("layers/ps_pvalue")) as.numeric(f[["layers/ps_pvalue/data"]]$read()) else NULL
  pkey <- NULL
  if (!is.null(pdata)) {
    pp <- as.numeric(f[["layers/ps_pvalue/indptr"]]$read())
    pkey <- rep(seq_len(n) - 1, diff(pp)) * K + as.numeric(f[["layers/ps_pvalue/indices"]]$read())
  }

  # the carried perturbations of each cell (obs/perturbations, comma-joined)
  labs <- if (!is.null(obs[["perturbations"]])) as.character(obs[["perturbations"]]) else rep("", n)
  labs[is.na(labs)] <- ""
  split <- strsplit(labs, ",", fixed = TRUE)
  ncar <- lengths(split)
  cell_j <- rep(seq_len(n), ncar)
  lab <- unlist(split, use.names = FALSE)
  if (is.null(lab)) lab <- character(0)
  k <- match(lab, rownames(var)) - 1
  if (all(c("perturbation", "group") %in% names(var)) && !is.null(params[["group_by"]]) &&
      params[["group_by"]] %in% names(obs)) {  # --group-by: labels P@group
    pair <- paste(var[["perturbation"]], var[["group"]], sep = "\r")
    k2 <- match(paste(lab, as.character(obs[[params[["group_by"]]]])[cell_j], sep = "\r"), pair) - 1
    k[is.na(k)] <- k2[is.na(k)]
  }
  key <- (cell_j - 1) * K + k
  ps_long <- xdata[match(key, xkey)]
  ps_long[is.na(ps_long) & !is.na(k)] <- 0  # carried, not stored: PS 0
  pv_long <- if (is.null(pdata)) rep(NA_real_, length(key)) else pdata[match(key, pkey)]

  guide_obs <- if (!is.null(obs[["guide"]])) as.character(obs[["guide"]]) else NULL
  guide_long <- rep(NA_character_, length(lab))
  if (!is.null(guide_obs)) {
    gs <- strsplit(ifelse(is.na(guide_obs), "", guide_obs), "+", fixed = TRUE)
    pos <- sequence(ncar)
    us <- if (!is.null(obs[["guide_units"]]))  # each guide's perturbation, parallel to guide
      strsplit(ifelse(is.na(obs[["guide_units"]]), "", as.character(obs[["guide_units"]])), "+", fixed = TRUE)
    else NULL
    pick <- function(g, all, i, m, u, t) {
      if (!is.null(u) && length(u) == length(all)) {
        mine <- all[u == t]
        if (!length(mine)) mine <- all[u == sub("@.*$", "", t)]  # --group-by: P@group
        return(if (length(mine)) paste(mine, collapse = "+") else g)
      }
      if (length(all) == m) all[i] else g
    }
    guide_long <- mapply(pick, guide_obs[cell_j], gs[cell_j], pos, ncar[cell_j],
                         if (is.null(us)) list(NULL) else us[cell_j], lab, USE.NAMES = FALSE)
    if (length(guide_long) == 0) guide_long <- character(0)
  }
  long <- data.frame(cell = rownames(obs)[cell_j], perturbation = lab, guide = as.character(guide_long),
                     ps = ps_long, ps_pvalue = pv_long, stringsAsFactors = FALSE)

  cells <- obs
  if (is.null(cells[["perturbation"]])) {
    joined <- vapply(split, function(s) if (length(s)) paste(s, collapse = "+") else control, "")
    cells[["perturbation"]] <- factor(joined)
  }
  if (is.null(cells[["guide"]])) cells[["guide"]] <- rep(NA_character_, n)
  if (is.null(cells[["n_guides"]])) cells[["n_guides"]] <- as.integer(ncar)
  if (is.null(cells[["ps"]]) || is.null(cells[["ps_perturbation"]]) || is.null(cells[["ps_pvalue"]])) {
    ps <- rep(NA_real_, n)
    best <- rep(NA_character_, n)
    pv <- rep(NA_real_, n)
    ok <- which(!is.na(ps_long))
    if (length(ok)) {
      # per cell the largest PS (first in file order on ties)
      o <- ok[order(cell_j[ok], -ps_long[ok], seq_along(ok))]
      first <- o[!duplicated(cell_j[o])]
      ps[cell_j[first]] <- ps_long[first]
      best[cell_j[first]] <- lab[first]
      pv[cell_j[first]] <- pv_long[first]
    }
    if (is.null(cells[["ps"]])) cells[["ps"]] <- ps
    if (is.null(cells[["ps_perturbation"]])) cells[["ps_perturbation"]] <- factor(best)
    if (is.null(cells[["ps_pvalue"]])) cells[["ps_pvalue"]] <- pv
  }

  genes <- if (has("uns/pertscore/regression_genes")) f[["uns/pertscore/regression_genes"]]$read() else character(0)
  beta <- if (has("varm/beta")) {
    b <- f[["varm/beta"]]$read()  # hdf5r gives the transpose: genes x perturbations
    b <- if (is.null(dim(b))) matrix(b, nrow = K) else t(b)
    dimnames(b) <- list(rownames(var), genes)
    as.data.frame(b, check.names = FALSE)
  } else data.frame(row.names = rownames(var))
  targets <- if (has("uns/pertscore/targets/perturbation"))
    data.frame(perturbation = f[["uns/pertscore/targets/perturbation"]]$read(),
               gene = f[["uns/pertscore/targets/gene"]]$read(), stringsAsFactors = FALSE)
  else data.frame(perturbation = character(0), gene = character(0))
  list(cells = cells, long = long, perturbations = var, beta = beta, targets = targets, parameters = params)
}
