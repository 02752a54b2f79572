# simulate --unmeasured-targets (a TAP-seq-like panel): same bytes on 1 and 2 ranks,
# targets outside the panel except K - U, downstream genes inside it, Poisson MOI.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
rm -f np*.* bad.*
for np in 1 2; do
  "$MPIEXEC" --oversubscribe -n "$np" "$PERTSCORE" simulate --cells 1500 --genes 60 --perturbations 400 \
    --unmeasured-targets 395 --moi 13 --poisson-moi --downstream 5 --seed 4 --out "np$np.h5ad" --quiet < /dev/null
done
for suffix in h5ad guides.tsv truth.tsv effects.tsv targets.gmt; do
  cmp "np1.$suffix" "np2.$suffix"
done
"$PYTHON" - <<'PY'
import collections, h5py
with h5py.File("np1.h5ad") as f:
    genes = {g.decode() for g in f["var/_index"][:]}
    shape = tuple(f["X"].attrs["shape"])
assert shape == (1500, 60) and len(genes) == 60, (shape, len(genes))
targets, down = {}, collections.defaultdict(set)
for line in open("np1.effects.tsv").read().splitlines()[1:]:
    pert, gene, lfc, role = line.split("\t")
    if role == "target":
        targets[pert] = gene
    else:
        down[pert].add(gene)
assert len(targets) == 400, len(targets)
measured = [p for p, g in targets.items() if g in genes]
assert len(measured) == 5, measured
assert all(len(d) == 5 and d <= genes for d in down.values()), "downstream genes must be in the panel"
per_cell = collections.Counter(l.split("\t")[0] for l in open("np1.guides.tsv").read().splitlines()[1:])
mean = sum(per_cell.values()) / 1500
# Poisson(13) guides, 10% controls merged into one record: about 0.9 * 13 + 1 = 12.7
assert 12.0 < mean < 13.4, mean
print("panel ok: %d of 400 targets measured, %.2f guide records per cell" % (len(measured), mean))
PY
# U larger than K is refused with a message naming the option
if "$PERTSCORE" simulate --cells 10 --genes 60 --perturbations 4 --unmeasured-targets 5 --out bad.h5ad --quiet \
    < /dev/null 2> bad.err; then
  echo "expected a failure"; exit 1
fi
grep -q "unmeasured-targets" bad.err
test ! -e bad.h5ad
