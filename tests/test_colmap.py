"""posfeat.sfm.colmap: database round trip, pixel convention, poses, verification, statistics."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest

from posfeat.datasets.camera import qvec_to_rotmat, rotmat_to_qvec
from posfeat.geometry import fundamental_from_poses, symmetric_epipolar_distance_np
from posfeat.io import DataError, FeatureReader, FeatureWriter
from posfeat.sfm import colmap, matching, verification


def _rot(axis, deg):
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.deg2rad(deg) * np.asarray(axis, float) / np.linalg.norm(axis)).as_matrix()


def test_keypoint_convention_roundtrip():
    xy = np.array([[0.0, 0.0], [10.25, 3.5], [639.0, 479.0]])
    c = colmap.to_colmap_keypoints(xy)
    assert c.dtype == np.float32 and c.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(c, xy + 0.5)
    np.testing.assert_allclose(colmap.from_colmap_keypoints(np.c_[c, np.ones((3, 4))]), xy, atol=1e-5)
    assert colmap.from_colmap_keypoints(np.zeros((0, 6))).shape == (0, 2)


def test_camera_from_K_shifts_principal_point():
    K = np.array([[500.0, 0, 319.5], [0, 510.0, 239.5], [0, 0, 1]])
    cam = colmap.camera_from_K(K, 640, 480)
    assert cam.model == pycolmap.CameraModelId.PINHOLE
    np.testing.assert_allclose(cam.params, [500, 510, 320, 240])
    # our pixel x ↔ COLMAP x + 0.5: projecting a point with K (ours) and the camera (COLMAP's) differs by 0.5
    X = np.array([0.3, -0.2, 2.0])
    ours = (K @ X)[:2] / X[2]
    np.testing.assert_allclose(cam.img_from_cam(X[None])[0], ours + 0.5, atol=1e-9)


def test_pose_helpers_against_geometry():
    R = _rot([0.3, -1.0, 0.2], 37.0)
    t = np.array([0.5, -1.0, 2.0])
    pose = pycolmap.Rigid3d(pycolmap.Rotation3d(R), t)
    R2, t2 = colmap.rigid_to_Rt(pose)
    np.testing.assert_allclose(R2, R, atol=1e-12)
    np.testing.assert_allclose(t2, t, atol=1e-12)
    q, tv = colmap.rigid_to_qvec_tvec(pose)
    np.testing.assert_allclose(q, rotmat_to_qvec(R), atol=1e-10)  # scipy, independent
    np.testing.assert_allclose(qvec_to_rotmat(q), R, atol=1e-10)
    np.testing.assert_allclose(tv, t, atol=1e-12)


def test_database_roundtrip(tmp_path):
    path = tmp_path / "db" / "database.db"
    db = colmap.create_database(path)
    try:
        cam_a = colmap.add_camera(db, colmap.guess_camera(640, 480))
        cam_b = colmap.add_camera(db, colmap.camera_from_K(np.diag([400.0, 400.0, 1.0]), 320, 240))
        ia = colmap.add_image(db, "a.jpg", cam_a)
        ib = colmap.add_image(db, "b.jpg", cam_b)
        ic = colmap.add_image(db, "c.jpg", cam_b, image_id=42)
        assert ic == 42
        kp = np.random.default_rng(0).uniform(0, 300, (20, 2))
        assert colmap.import_keypoints(db, ia, kp) == 20
        colmap.import_keypoints(db, ib, kp[:10])
        np.testing.assert_allclose(db.read_keypoints(ia)[:, :2], kp + 0.5, atol=1e-4)
        m = np.array([[0, 3], [5, 1], [7, 9]])
        assert colmap.import_matches(db, ib, ia, m) == 3  # larger id first: pycolmap swaps the columns
        np.testing.assert_array_equal(colmap.read_matches(db, ib, ia), m)
        np.testing.assert_array_equal(colmap.read_matches(db, ia, ib), m[:, ::-1])
        assert colmap.import_matches(db, ia, ic, np.zeros((0, 2))) == 0
        assert not db.exists_matches(ia, ic)
        assert colmap.read_matches(db, ia, ic).shape == (0, 2)
        assert colmap.read_inlier_matches(db, ia, ib).shape == (0, 2)
        with pytest.raises(ValueError, match="itself"):
            colmap.import_matches(db, ia, ia, m)
        assert {im.name: im.image_id for im in db.read_all_images()} == {"a.jpg": ia, "b.jpg": ib, "c.jpg": 42}
        assert db.num_rigs() == 2 and db.num_frames() == 3
        assert db.read_camera(cam_b).params[2] == pytest.approx(0.5)
    finally:
        db.close()
    with pytest.raises(FileExistsError):
        colmap.create_database(path, overwrite=False)
    colmap.create_database(path).close()  # overwrite: a fresh, empty database
    db = pycolmap.Database.open(str(path))
    assert db.num_images() == 0
    db.close()


def test_write_pairs_file(tmp_path):
    p = tmp_path / "pairs.txt"
    assert colmap.write_pairs_file(p, [("a.jpg", "b.jpg"), ("b.jpg", "c.jpg")]) == 2
    assert p.read_text() == "a.jpg b.jpg\nb.jpg c.jpg\n"
    with pytest.raises(DataError, match="spaces"):
        colmap.write_pairs_file(p, [("a b.jpg", "c.jpg")])


def _two_view(rng, n=150):
    """Two cameras seeing random 3D points: K, poses, our-convention projections."""
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    R1, t1 = np.eye(3), np.zeros(3)
    R2 = _rot([0, 1, 0.1], -12.0)
    t2 = -R2 @ np.array([1.0, 0.1, 0.0])
    X = np.c_[rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(4, 8, n)]

    def proj(R, t):
        x = (K @ (X @ R.T + t).T).T
        return x[:, :2] / x[:, 2:]

    return K, (R1, t1), (R2, t2), proj(R1, t1), proj(R2, t2)


def test_verification_keeps_true_matches(tmp_path):
    rng = np.random.default_rng(1)
    K, (R1, t1), (R2, t2), x1, x2 = _two_view(rng)
    F = fundamental_from_poses(K, R1, t1, K, R2, t2)
    # 40 outliers: random positions in image 2, far (> 10 px) from their epipolar lines
    out2 = []
    while len(out2) < 40:
        p = rng.uniform([0, 0], [640, 480])
        if symmetric_epipolar_distance_np(x1[len(out2)][None], p[None], F)[0] > 10:
            out2.append(p)
    kp2 = np.vstack([x2, np.array(out2)])
    n = len(x1)
    matches = np.vstack([np.c_[np.arange(n), np.arange(n)], np.c_[np.arange(40), n + np.arange(40)]])
    db_path = tmp_path / "database.db"
    db = colmap.create_database(db_path)
    cam = colmap.add_camera(db, colmap.camera_from_K(K, 640, 480))
    i1, i2 = colmap.add_image(db, "1.png", cam), colmap.add_image(db, "2.png", cam)
    colmap.import_keypoints(db, i1, x1)
    colmap.import_keypoints(db, i2, kp2)
    colmap.import_matches(db, i1, i2, matches)
    db.close()
    colmap.write_pairs_file(tmp_path / "pairs.txt", [("1.png", "2.png")])
    with colmap.colmap_log_level(False):
        verification.verify_pairs(db_path, tmp_path / "pairs.txt")
    db = pycolmap.Database.open(str(db_path))
    try:
        inl = colmap.read_inlier_matches(db, i1, i2)
        stats = verification.verification_stats(db)
    finally:
        db.close()
    true = {(i, i) for i in range(n)}
    got = {tuple(r) for r in inl.tolist()}
    assert len(got & true) >= 0.95 * n
    assert not (got - true)  # no outlier survives
    assert stats.num_matched_pairs == 1 and stats.num_matches == n + 40
    assert stats.num_inlier_pairs == 1 and stats.num_inlier_matches == len(inl)
    assert stats.inliers_per_pair == {(i1, i2): len(inl)}
    with pytest.raises(DataError, match="pair list"):
        verification.verify_pairs(db_path, tmp_path / "missing.txt")


def test_reconstruction_stats_and_largest_model():
    zero = colmap.reconstruction_stats(None)
    assert set(zero) == {
        "num_reg_images",
        "num_sparse_points",
        "num_observations",
        "mean_track_length",
        "num_observations_per_image",
        "mean_reproj_error",
    }
    assert all(v == 0 for v in zero.values())
    assert colmap.largest_model({}) is None

    def model(n_images, n_points):
        rec = pycolmap.Reconstruction()
        cam = colmap.camera_from_K(np.array([[300.0, 0, 99.5], [0, 300.0, 99.5], [0, 0, 1]]), 200, 200, camera_id=1)
        rec.add_camera_with_trivial_rig(cam)
        for i in range(1, n_images + 1):
            im = pycolmap.Image(name=f"{i}.png", camera_id=1, image_id=i)
            im.points2D = pycolmap.Point2DList([pycolmap.Point2D(np.array([100.5, 100.5])) for _ in range(n_points)])
            rec.add_image_with_trivial_frame(im, pycolmap.Rigid3d(pycolmap.Rotation3d(), np.array([-0.1 * i, 0, 0])))
        for p in range(n_points):
            X = np.array([0.05 * p, 0.0, 5.0])
            track = pycolmap.Track()
            for i in range(1, n_images + 1):
                track.add_element(i, p)
            rec.add_point3D(X, track)
        return rec

    a, b, c = model(2, 3), model(3, 2), model(3, 4)
    assert colmap.largest_model({0: a, 1: b, 2: c}) is c
    s = colmap.reconstruction_stats(c)
    assert s["num_reg_images"] == 3 and s["num_sparse_points"] == 4
    assert s["num_observations"] == 12
    assert s["mean_track_length"] == pytest.approx(3.0)
    assert s["num_observations_per_image"] == pytest.approx(4.0)
    assert s["mean_reproj_error"] >= 0
    poses = colmap.registered_poses(c)
    assert sorted(poses) == ["1.png", "2.png", "3.png"]
    R2, t2 = colmap.rigid_to_Rt(poses["2.png"])
    np.testing.assert_allclose(-R2.T @ t2, [0.2, 0, 0], atol=1e-12)  # the camera centre


def test_match_and_import(tmp_path):
    rng = np.random.default_rng(0)
    d = rng.normal(size=(30, 16)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    perm = rng.permutation(30)
    h5 = tmp_path / "f.h5"
    with FeatureWriter(h5) as fw:
        fw.add("s/a", rng.uniform(0, 100, (30, 2)), np.ones(30), d, (100, 100))
        fw.add("s/b", rng.uniform(0, 100, (30, 2)), np.ones(30), d[perm], (100, 100))
        fw.add("s/c", np.zeros((0, 2)), np.zeros(0), np.zeros((0, 16)), (100, 100))
    db = colmap.create_database(tmp_path / "database.db")
    cam = colmap.add_camera(db, colmap.guess_camera(100, 100))
    ids = {n: colmap.add_image(db, n, cam) for n in ("a", "b", "c")}
    keys = {n: f"s/{n}" for n in ids}
    with FeatureReader(h5) as fr:
        st = matching.match_and_import(
            db, fr, keys, ids, [("a", "b"), ("b", "a"), ("a", "c"), ("a", "a")], ratio=0.75, progress=False
        )
        with pytest.raises(DataError, match="'zz' is not in the database"):
            matching.match_and_import(db, fr, keys, ids, [("a", "zz")], progress=False)
    m = colmap.read_matches(db, ids["a"], ids["b"])
    db.close()
    assert (st.num_pairs, st.num_matched_pairs, st.num_empty_pairs, st.num_duplicate_pairs) == (2, 1, 1, 2)
    assert st.num_matches == 30 and st.matched_pairs == [("a", "b")]
    # identical descriptors under a permutation: every match is i → position of i in perm
    inv = np.argsort(perm)
    np.testing.assert_array_equal(np.sort(m[:, 0]), np.arange(30))
    np.testing.assert_array_equal(m[:, 1], inv[m[:, 0]])


def test_cache_friendly_order_reads_fewer_descriptors():
    names = [f"{i:03d}" for i in range(40)]
    pairs = [(names[i], names[j]) for i in range(40) for j in range(i + 1, 40)]
    assert matching.cache_friendly_order(pairs[:5], 64) == list(range(5))  # fits the cache: as given
    order = matching.cache_friendly_order(pairs, 8)
    assert sorted(order) == list(range(len(pairs)))
    given, tiled = matching.lru_reads(pairs, 8), matching.lru_reads([pairs[k] for k in order], 8)
    assert given >= len(pairs)  # the given exhaustive order misses about once per pair
    assert tiled <= len(pairs) / 2  # tiles of 4 × 4 images: 323 reads for 780 pairs


def test_match_and_import_in_tiles_matches_the_same(tmp_path):
    """With more images than the cache, the pairs are matched tile by tile: the same matches reach the database,
    the matched pairs come back in the order asked, and fewer descriptor sets are read."""
    rng = np.random.default_rng(1)
    h5 = tmp_path / "f.h5"
    names = [f"{i}.jpg" for i in range(9)]
    with FeatureWriter(h5) as fw:
        for n in names:
            d = rng.normal(size=(40, 16)).astype(np.float32)
            fw.add(n, rng.uniform(0, 100, (40, 2)), np.ones(40), d / np.linalg.norm(d, axis=1, keepdims=True), (99, 99))
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    results = {}
    for cache_size in (64, 4):
        db = colmap.create_database(tmp_path / f"db{cache_size}.db")
        cam = colmap.add_camera(db, colmap.guess_camera(99, 99))
        ids = {n: colmap.add_image(db, n, cam) for n in names}
        with FeatureReader(h5) as fr:
            st = matching.match_and_import(
                db, fr, {n: n for n in names}, ids, pairs, ratio=0.9, cache_size=cache_size, progress=False
            )
        matches = {p: colmap.read_matches(db, ids[p[0]], ids[p[1]]).tolist() for p in st.matched_pairs}
        db.close()
        results[cache_size] = (st, matches)
    (whole, m_whole), (tiled, m_tiled) = results[64], results[4]
    assert tiled.matched_pairs == whole.matched_pairs == [p for p in pairs if p in m_whole]
    assert m_tiled == m_whole and tiled.num_matches == whole.num_matches
    # the cache's own count of its reads is what the estimate says
    assert whole.descriptor_reads == 9 and tiled.descriptor_reads == matching.lru_reads(
        [pairs[k] for k in matching.cache_friendly_order(pairs, 4)], 4
    )
    assert tiled.descriptor_reads < matching.lru_reads(pairs, 4)
