/* Our stages as PETSc log stages, so `-log_view` shows read / targets / ridge /
 * permutations / score / dosage / cv / write beside PETSc's own events (STYLE.md,
 * PETSc's lifecycle). Without PetscInitialize (unit tests linking the library
 * alone) these do nothing. Stages nest: targets inside read, permutations inside ridge. */
#include "pertscore/util.h"

#ifdef PS_NO_PETSC /* the fuzz harnesses' reader objects link no PETSc (tests/fuzz) */
int ps_log_stage_push(const char *name) {
  (void)name;
  return 0;
}
void ps_log_stage_pop(int pushed) { (void)pushed; }
#else
#include <petscsys.h>
#include <string.h>

enum { MAX_STAGES = 32 };
static struct {
  char name[32];
  PetscLogStage id;
} registered[MAX_STAGES];
static int n_registered;

static int petsc_up(void) {
  PetscBool up = PETSC_FALSE, down = PETSC_FALSE;
  PetscInitialized(&up);
  PetscFinalized(&down);
  return up && !down;
}

/* The PETSc stage named name, registered on first use (collectively, as every rank
 * opens the same stages in the same order); -1 when there is no room. */
static int stage_id(const char *name, PetscLogStage *id) {
  for (int i = 0; i < n_registered; i++)
    if (strcmp(registered[i].name, name) == 0) return *id = registered[i].id, 0;
  if (n_registered == MAX_STAGES || PetscLogStageRegister(name, id) != 0) return -1;
  snprintf(registered[n_registered].name, sizeof registered[n_registered].name, "%s", name);
  registered[n_registered++].id = *id;
  return 0;
}

int ps_log_stage_push(const char *name) {
  PetscLogStage id;
  if (!petsc_up() || stage_id(name, &id) != 0) return 0;
  return PetscLogStagePush(id) == 0;
}

void ps_log_stage_pop(int pushed) {
  if (pushed && petsc_up()) PetscLogStagePop();
}
#endif
