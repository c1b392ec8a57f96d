/* qe_f32_vchain_ukernel__avx512: the elementwise-chain block interpreter (qe_f32_vchain.inc)
 * compiled for avx512. */
#ifndef QE_F32_VCHAIN_UKERNEL__AVX512_H
#define QE_F32_VCHAIN_UKERNEL__AVX512_H

#include <math.h>
#include <string.h>
#include "../qe_target.h"
#include "qe_f32_chain_params.h"
#include "qe_f32_math.h"

#ifdef QE_HAVE_X86_SIMD
#define QE_VCHAIN_NAME qe_f32_vchain_ukernel__avx512
#define QE_VCHAIN_TARGET QE_TARGET_AVX512VNNI
#include "qe_f32_vchain.inc"
#undef QE_VCHAIN_NAME
#undef QE_VCHAIN_TARGET
#endif

#endif
