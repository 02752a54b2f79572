/* Counter-based RNG: draw i of stream s under seed k is a pure function of
 * (k, s, i), so the simulator gives the same bytes on any number of ranks. */
#include "pertscore/util.h"

#include <math.h>

static uint64_t mix64(uint64_t z) { /* splitmix64 finalizer */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

ps_rng ps_rng_make(uint64_t seed, uint64_t stream) {
  ps_rng r = {mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ (stream * 0xd1b54a32d192ed03ULL)), 0};
  return r;
}

uint64_t ps_rng_next(ps_rng *r) { return mix64(r->key + 0x9e3779b97f4a7c15ULL * ++r->counter); }

double ps_rng_uniform(ps_rng *r) { return ((double)(ps_rng_next(r) >> 11) + 0.5) * 0x1.0p-53; }

double ps_rng_normal(ps_rng *r) {
  double u1 = ps_rng_uniform(r), u2 = ps_rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double ps_rng_gamma(ps_rng *r, double shape) { /* Marsaglia-Tsang */
  if (shape < 1.0) return ps_rng_gamma(r, shape + 1.0) * pow(ps_rng_uniform(r), 1.0 / shape);
  double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
  for (;;) {
    double x = ps_rng_normal(r), v = 1.0 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    double u = ps_rng_uniform(r);
    if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
  }
}

int64_t ps_rng_poisson(ps_rng *r, double mean) {
  if (mean <= 0) return 0;
  if (mean < 30) { /* Knuth */
    double l = exp(-mean), p = 1.0;
    int64_t k = 0;
    do {
      k++;
      p *= ps_rng_uniform(r);
    } while (p > l);
    return k - 1;
  }
  /* large mean: gamma-Poisson would be exact; normal approximation is enough here */
  double x = floor(mean + sqrt(mean) * ps_rng_normal(r) + 0.5);
  return x < 0 ? 0 : (int64_t)x;
}
