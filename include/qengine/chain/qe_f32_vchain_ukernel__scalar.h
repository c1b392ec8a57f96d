/* qe_f32_vchain_ukernel__scalar: the elementwise-chain block interpreter (qe_f32_vchain.inc)
 * compiled for scalar. */
#ifndef QE_F32_VCHAIN_UKERNEL__SCALAR_H
#define QE_F32_VCHAIN_UKERNEL__SCALAR_H

#include <math.h>
#include <string.h>
#include "../qe_target.h"
#include "qe_f32_chain_params.h"
#include "qe_f32_math.h"


#define QE_VCHAIN_NAME qe_f32_vchain_ukernel__scalar
#define QE_VCHAIN_TARGET 
#include "qe_f32_vchain.inc"
#undef QE_VCHAIN_NAME
#undef QE_VCHAIN_TARGET


#endif
