"""Geometry helpers against hand-computed cases and independent computations (OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from posfeat import geometry as G
from posfeat.datasets import camera


def _pose(rvec, t):
    R, _ = cv2.Rodrigues(np.asarray(rvec, float))
    return R, np.asarray(t, float)


def test_normalize_roundtrip_and_corners():
    xy = torch.tensor([[0.0, 0.0], [639.0, 479.0], [319.5, 239.5]])
    n = G.normalize_coords(xy, 640, 480)
    assert torch.allclose(n[0], torch.tensor([-1.0, -1.0]))
    assert torch.allclose(n[1], torch.tensor([1.0, 1.0]))
    assert torch.allclose(n[2], torch.tensor([0.0, 0.0]))
    assert torch.allclose(G.denormalize_coords(n, 640, 480), xy)


def test_sample_feature_map_convention():
    # image 64 wide, feature map 16 wide: pixel x lands at feature coordinate x * 16 / 63 - 0.5
    W, H, Wf, Hf = 64, 48, 16, 12
    xs = torch.arange(Wf, dtype=torch.float32)
    fmap = xs.view(1, 1, 1, Wf).expand(1, 1, Hf, Wf).contiguous()  # value = feature column index
    x_img = torch.tensor([10.0, 20.0, 31.5, 40.0])
    xy = torch.stack([x_img, torch.full_like(x_img, 20.0)], -1)[None]
    out = G.sample_feature_map(fmap, xy, (W, H), normalize=False, padding_mode="border")[0, :, 0]
    expected = (x_img * Wf / (W - 1) - 0.5).clamp(0, Wf - 1)
    assert torch.allclose(out, expected, atol=1e-5)
    # normalised sampling gives unit vectors
    fm = torch.randn(2, 8, Hf, Wf)
    v = G.sample_feature_map(fm, torch.rand(2, 5, 2) * 40, (W, H))
    assert v.shape == (2, 5, 8)
    assert torch.allclose(v.norm(dim=-1), torch.ones(2, 5), atol=1e-5)


def test_relative_pose_and_rotation_angle():
    R1, t1 = _pose([0.1, -0.2, 0.05], [0.3, 0.1, 2.0])
    R2, t2 = _pose([-0.3, 0.4, 0.2], [-0.5, 0.2, 1.0])
    R, t = G.relative_pose(R1, t1, R2, t2)
    X = np.random.default_rng(0).normal(size=(10, 3))
    x1 = X @ R1.T + t1
    x2 = X @ R2.T + t2
    assert np.allclose(x1 @ R.T + t, x2)
    # rotation angle of a known axis-angle
    Rz, _ = cv2.Rodrigues(np.array([0.0, 0.0, np.radians(37.0)]))
    assert G.rotation_angle_deg(Rz) == pytest.approx(37.0, abs=1e-6)
    assert G.rotation_angle_deg(np.eye(3)) == pytest.approx(0.0, abs=1e-6)


def test_fundamental_hand_case_pure_translation():
    # K = I, R = I, camera 2 translated along x: F ∝ [t]x, epipolar lines are horizontal (y2 = y1)
    I = np.eye(3)
    F = G.fundamental_from_poses(I, I, np.zeros(3), I, I, np.array([-1.0, 0.0, 0.0]))
    x1 = torch.tensor([[[0.3, 0.2]]], dtype=torch.float64)
    x2_on = torch.tensor([[[5.0, 0.2]]], dtype=torch.float64)
    x2_off = torch.tensor([[[5.0, 0.7]]], dtype=torch.float64)
    Ft = torch.from_numpy(F)[None]
    assert G.epipolar_distance(x1, x2_on, Ft).item() == pytest.approx(0.0, abs=1e-12)
    assert G.epipolar_distance(x1, x2_off, Ft).item() == pytest.approx(0.5, abs=1e-12)
    # |F[2,2]| = 0 here: F is normalised by its norm, not divided by ~0
    assert np.isfinite(F).all() and np.linalg.norm(F) == pytest.approx(1.0)


def test_fundamental_matches_projection_and_opencv():
    rng = np.random.default_rng(1)
    K1 = np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]])
    K2 = np.array([[450.0, 0, 300], [0, 455, 250], [0, 0, 1]])
    R1, t1 = _pose([0.05, 0.1, -0.02], [0.0, 0.0, 0.0])
    R2, t2 = _pose([0.1, -0.25, 0.05], [-1.0, 0.1, 0.2])
    X = rng.uniform([-2, -2, 4], [2, 2, 8], size=(50, 3))

    def proj(K, R, t):
        x = (X @ R.T + t) @ K.T
        return x[:, :2] / x[:, 2:]

    p1, p2 = proj(K1, R1, t1), proj(K2, R2, t2)
    F = G.fundamental_from_poses(K1, R1, t1, K2, R2, t2)
    d = G.epipolar_distance(torch.from_numpy(p1), torch.from_numpy(p2), torch.from_numpy(F))
    assert d.max().item() < 1e-6
    assert G.symmetric_epipolar_distance_np(p1, p2, F).max() < 1e-6
    # OpenCV's 8-point estimate from the same correspondences is the same F up to scale
    F_cv, _ = cv2.findFundamentalMat(p1, p2, cv2.FM_8POINT)
    a, b = F / np.linalg.norm(F), F_cv / np.linalg.norm(F_cv)
    assert min(np.abs(a - b).max(), np.abs(a + b).max()) < 1e-4
    # the all-pairs matrix agrees with the elementwise version on its diagonal
    D = G.epipolar_distance_matrix(torch.from_numpy(p1), torch.from_numpy(p2 + 3.0), torch.from_numpy(F))
    d3 = G.epipolar_distance(torch.from_numpy(p1), torch.from_numpy(p2 + 3.0), torch.from_numpy(F))
    assert torch.allclose(torch.diagonal(D), d3)


def test_epipolar_distance_hand_value():
    # line l = F x1 = (0, 1, -2) (the horizontal line y = 2): distance of (7, 5) is 3
    F = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -2.0]])
    d = G.epipolar_distance(torch.tensor([[3.0, 9.0]]), torch.tensor([[7.0, 5.0]]), F)
    assert d.item() == pytest.approx(3.0)


def test_homography_and_quaternions():
    H = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, -1.0], [0.0, 0.0, 1.0]])
    assert np.allclose(G.apply_homography_np(H, np.array([[1.0, 1.0], [0.0, 2.0]])), [[3.0, 2.0], [1.0, 5.0]])
    H2 = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0, 1.0]])
    assert np.allclose(G.apply_homography_np(H2, np.array([[2.0, 4.0]])), [[1.0, 2.0]])
    for rvec in ([0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [np.pi - 0.01, 0.0, 0.0]):
        R, _ = cv2.Rodrigues(np.asarray(rvec))
        q = camera.rotmat_to_qvec(R)
        assert q[0] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)
        assert np.allclose(camera.qvec_to_rotmat(q), R, atol=1e-9)
    # a 90° turn about z: q = (cos 45°, 0, 0, sin 45°)
    Rz = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    assert np.allclose(camera.rotmat_to_qvec(Rz), [np.sqrt(0.5), 0, 0, np.sqrt(0.5)])
    assert camera.is_rotation(Rz) and not camera.is_rotation(2 * Rz) and not camera.is_rotation(-Rz)
    assert np.allclose(G.skew(np.array([1.0, 2.0, 3.0])) @ np.array([4.0, 5.0, 6.0]), np.cross([1, 2, 3], [4, 5, 6]))
