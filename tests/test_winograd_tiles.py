"""Winograd over 4x4 tiles: the weight transform, and the stem-with-its-pool kernel under every schedule (on the
targets any x86 machine runs; the kernel and its schedules do not depend on the vector width)."""

from __future__ import annotations

import numpy as np
import pytest

from sqnxt_compiler.kernels.winograd import MaxPoolWindow, winograd_matrices, winograd_rows_kernel
from sqnxt_compiler.kernels.winograd_tiles import transform_weights_2d, winograd_tiles_kernel
from winograd_reference import POOL_CASES, check_every_schedule, direct_conv, max_pool, random_conv


@pytest.mark.parametrize("kernel", [5, 7])
def test_transformed_weights_compute_each_phase_correlation(kernel) -> None:
    """AT ((G w_phase G^T) * (BT d BT^T)) AT^T is the 4x4 correlation of a tile d with the phase's taps
    w[2q + py, 2p + px] (zero past the kernel)."""
    rng = np.random.default_rng(kernel)
    weight = rng.standard_normal((2, 3, kernel, kernel))
    taps = -(-kernel // 2)
    at, _, bt = winograd_matrices(4, taps)
    u = transform_weights_2d(weight).astype(np.float64)
    for py in range(2):
        for px in range(2):
            phase = np.zeros((2, 3, taps, taps))
            own = weight[:, :, py::2, px::2]
            phase[:, :, :own.shape[2], :own.shape[3]] = own
            d = rng.standard_normal((3, taps + 3, taps + 3))
            expected = np.array([[np.einsum("ocqp,cqp->o", phase, d[:, i:i + taps, x:x + taps]) for x in range(4)]
                                 for i in range(4)])
            transformed = np.einsum("jr,crs,ks->cjk", bt, d, bt)
            got = np.einsum("ij,ocjk,cjk,xk->ixo", at, u[:, py, px], transformed, at)
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target_name", ["host", "x86-avx2"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape, out_channels, kernel, padding, window", POOL_CASES)
def test_stem_with_its_max_pool_matches_under_every_schedule(shape, out_channels, kernel, padding, window, relu,
                                                             target_name) -> None:
    """Without ReLU the outputs are signed, so a pool that read a tile past the image, a padded column or a
    zero would fail; F(4x4, 4x4) in float32 stays within 1e-5 of the output's range."""
    data, weight, bias_values = random_conv(shape, out_channels, kernel, bias=True, seed=5)
    expected = max_pool(direct_conv(data, weight, bias_values, padding, relu, 2), window)
    func = winograd_tiles_kernel(shape, out_channels, kernel[0], padding, True, relu, window)
    check_every_schedule(func, [data, transform_weights_2d(weight), bias_values], expected, target_name,
                         rule_name="winograd_tiles", tolerance=1e-5)


@pytest.mark.parametrize("window", [MaxPoolWindow(3, 3, 6, 6), MaxPoolWindow(7, 2, 7, 7)],
                         ids=["stride does not divide the tile", "window reads past the next tile"])
@pytest.mark.parametrize("tiles", [True, False], ids=["tiles", "rows"])
def test_a_pool_that_does_not_fit_the_row_tiles_is_refused(window, tiles) -> None:
    assert not window.fits_row_tiles()
    with pytest.raises(ValueError, match=f"{window.kernel}x{window.kernel} pool of stride {window.stride}"):
        if tiles:
            winograd_tiles_kernel((1, 3, 40, 40), 8, 5, (2, 2, 2, 2), True, True, window)
        else:
            winograd_rows_kernel((1, 3, 40, 40), 8, (5, 5), 2, (2, 2, 2, 2), True, True, pool=window)
