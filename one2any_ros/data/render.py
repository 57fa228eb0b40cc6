"""CPU renderer: pybullet's ER_TINY_RENDERER in DIRECT mode (docs/architecture.md, Renderers). Only the
rasterising is here: the scene (poses, light, background plane, distractors, occluders) and the finished
frame (compositing, noise) are :class:`scene.SceneRenderer`'s, shared with the OpenGL renderer.

Camera: OpenCV optical frame at the world origin (x right, y down, z forward), so the world frame IS
the camera frame and an object is placed with ``T_cam_obj`` directly. View = diag(1,-1,-1,1); the
projection comes from K with pixel centres at integer coordinates (measured: a rectangle edge at
u = 60.1 covers columns 61.. and one at 60.0 covers 60..); metric z = f·n / (f − (f−n)·d).
Render crops directly with :func:`poses.crop_intrinsics` (a shifted, scaled K) rather than cropping.

The pose samplers, the sensor model and the scene's public names are re-exported here, where callers
have always imported them from.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from one2any_ros.data.objects import ObjectSpec
from one2any_ros.data.poses import (
    DEFAULT_HEIGHT,
    DEFAULT_K,
    DEFAULT_WIDTH,
    axis_angle_to_matrix,
    crop_intrinsics,
    random_rotation,
    rotation_angle,
    rotation_at_angle,
    sample_pose,
    sample_translation,
)
from one2any_ros.data.scene import BackgroundSpec, Raster, SceneDraw, SceneRenderer, occluder_pose, random_light
from one2any_ros.data.sensor import MAX_RANGE_M, MIN_RANGE_M, add_depth_noise, add_rgb_noise, depth_noise_sigma

__all__ = [
    "DEFAULT_HEIGHT", "DEFAULT_K", "DEFAULT_WIDTH", "MAX_RANGE_M", "MIN_RANGE_M", "BackgroundSpec",
    "Renderer", "add_depth_noise", "add_rgb_noise", "axis_angle_to_matrix", "crop_intrinsics",
    "depth_noise_sigma", "occluder_pose", "projection_matrix", "random_light", "random_rotation",
    "rotation_angle", "rotation_at_angle", "sample_pose", "sample_translation",
]

_HIDDEN = (1000.0, 1000.0, -1000.0)  # behind and beside the camera: never rasterised (checked)


def projection_matrix(K: np.ndarray, width: int, height: int, near: float, far: float) -> list[float]:
    """pybullet projection (column-major 16 floats) for an OpenCV K, pixel centres at integers."""
    fx, fy, cx, cy, sk = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    P = np.array(
        [
            [2 * fx / width, -2 * sk / width, 1 - 2 * cx / width, 0],
            [0, 2 * fy / height, 2 * (cy + 1) / height - 1, 0],
            [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, -1, 0],
        ]
    )
    return P.T.ravel().tolist()


_VIEW = np.diag([1.0, -1.0, -1.0, 1.0]).T.ravel().tolist()


class Renderer(SceneRenderer):
    """One pybullet DIRECT client; reusable; caches loaded objects by ``ObjectSpec.fingerprint`` (LRU).
    pybullet rasterises the object, distractors and occluders; the background plane is analytic
    (:class:`scene.SceneRenderer`)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        max_cached_objects: int = 32,
        reset_every_loads: int = 200,
        max_range: float = MAX_RANGE_M,
    ) -> None:
        import pybullet

        super().__init__(seed=seed, max_range=max_range)
        self._pb = pybullet
        self._tmp = Path(tempfile.mkdtemp(prefix="one2any_render_"))
        self._cid = pybullet.connect(pybullet.DIRECT)
        self._max_cached = max_cached_objects
        self._reset_every = reset_every_loads
        self._objects: OrderedDict[str, int] = OrderedDict()
        self._loads = 0
        self._setup_scene()

    def _setup_scene(self) -> None:
        pb, cid = self._pb, self._cid
        pb.resetSimulation(physicsClientId=cid)
        pb.setPhysicsEngineParameter(enableFileCaching=0, physicsClientId=cid)
        self._objects.clear()
        self._loads = 0
        self._tex_ids = [self._load_texture(t, f"bg{i}") for i, t in enumerate(self._textures)]
        self._distractors = []  # (body id, half extents), the shared pool's shapes
        for kind, he in self._distractor_shapes:
            if kind == "box":
                vs = pb.createVisualShape(pb.GEOM_BOX, halfExtents=he.tolist(), physicsClientId=cid)
            else:
                vs = pb.createVisualShape(pb.GEOM_SPHERE, radius=float(he[0]), physicsClientId=cid)
            self._distractors.append((self._hidden_body(vs), he))
        self._occluders = []
        for he in self._occluder_half_extents:
            vs = pb.createVisualShape(pb.GEOM_BOX, halfExtents=he.tolist(), physicsClientId=cid)
            self._occluders.append((self._hidden_body(vs), he))

    def _hidden_body(self, visual_shape: int) -> int:
        return self._pb.createMultiBody(0, baseVisualShapeIndex=visual_shape, basePosition=_HIDDEN,
                                        physicsClientId=self._cid)

    def _load_texture(self, img: np.ndarray, name: str) -> int:
        path = self._tmp / f"{name}.png"
        cv2.imwrite(str(path), img[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
        return self._pb.loadTexture(str(path), physicsClientId=self._cid)

    def _body_for(self, obj: ObjectSpec) -> int:
        key = obj.fingerprint
        if key in self._objects:
            self._objects.move_to_end(key)
            return self._objects[key]
        if self._loads >= self._reset_every:  # pybullet keeps some per-shape memory: start clean now and then
            self._setup_scene()
        while len(self._objects) >= self._max_cached:
            _, bid = self._objects.popitem(last=False)
            self._pb.removeBody(bid, physicsClientId=self._cid)
        d = self._tmp / "objects"
        stem = f"o{self._loads}_{obj.key}"
        path = obj.export_obj(d, stem=stem)
        vs = self._pb.createVisualShape(self._pb.GEOM_MESH, fileName=str(path), physicsClientId=self._cid)
        bid = self._pb.createMultiBody(
            0, baseVisualShapeIndex=vs, basePosition=_HIDDEN, physicsClientId=self._cid
        )
        for f in d.glob(f"{stem}.*"):  # pybullet has read them (file caching is off)
            f.unlink()
        self._loads += 1
        self._objects[key] = bid
        return bid

    def _place(self, bid: int, T: np.ndarray | None) -> None:
        if T is None:
            self._pb.resetBasePositionAndOrientation(bid, _HIDDEN, (0, 0, 0, 1), physicsClientId=self._cid)
        else:
            self._pb.resetBasePositionAndOrientation(
                bid,
                np.asarray(T[:3, 3], float).tolist(),
                Rotation.from_matrix(T[:3, :3]).as_quat().tolist(),  # (x, y, z, w): pybullet's order too
                physicsClientId=self._cid,
            )

    def _place_pool(self, pool: list[tuple[int, np.ndarray]], used: list[tuple[int, np.ndarray, int]]
                    ) -> None:
        """Place the pool's bodies that ``used`` lists (pool index, T, texture), textured; hide the rest."""
        where = {idx: (T, tex) for idx, T, tex in used}
        for i, (bid, _) in enumerate(pool):
            if i in where:
                self._place(bid, where[i][0])
                self._pb.changeVisualShape(
                    bid,
                    -1,
                    textureUniqueId=self._tex_ids[where[i][1] % len(self._tex_ids)],
                    physicsClientId=self._cid,
                )
            else:
                self._place(bid, None)

    # -- rasterising -----------------------------------------------------------------------------
    def _rasterise(self, scene: SceneDraw) -> Raster:
        pb, cid = self._pb, self._cid
        K, T_cam_obj, width, height, lt = scene.K, scene.T_cam_obj, scene.width, scene.height, scene.light
        bid = self._body_for(scene.obj)
        for other in self._objects.values():
            if other != bid:
                self._place(other, None)
        self._place(bid, T_cam_obj)
        self._place_pool(self._distractors, scene.distractors)
        self._place_pool(self._occluders, scene.occluders)
        # near/far tight around what pybullet rasterises (the plane is analytic)
        r = 0.5 * scene.obj.diameter
        z_obj = float(T_cam_obj[2, 3])
        occ_z = [float(T[2, 3] - np.linalg.norm(self._occluders[i][1])) for i, T, _ in scene.occluders]
        near = max(0.01, min([z_obj - r - 0.02] + [z - 0.02 for z in occ_z]))
        far = z_obj + r + 0.05
        for _, Td, _ in scene.distractors:
            far = max(far, float(Td[2, 3]) + 0.25)
        far = min(max(far, near + 0.05), self.max_range + 0.5)
        kw = dict(
            lightDirection=list(map(float, lt["direction"])),
            lightColor=list(map(float, lt["color"])),
            lightDistance=float(lt["distance"]),
            shadow=int(bool(lt["shadow"])),
            lightAmbientCoeff=float(lt["ambient"]),
            lightDiffuseCoeff=float(lt["diffuse"]),
            lightSpecularCoeff=float(lt["specular"]),
        )
        proj = projection_matrix(K, width, height, near, far)

        def capture():
            return pb.getCameraImage(width, height, viewMatrix=_VIEW, projectionMatrix=proj,
                                     renderer=pb.ER_TINY_RENDERER, physicsClientId=cid, **kw)

        _, _, rgba, dbuf, seg = capture()
        rgb = np.ascontiguousarray(np.asarray(rgba, np.uint8).reshape(height, width, 4)[:, :, :3])
        dbuf = np.asarray(dbuf, np.float32).reshape(height, width)
        seg = np.asarray(seg).reshape(height, width)
        hit = (seg >= 0) & (dbuf < 1.0)
        fn, fmn = np.float32(far * near), np.float32(far - near)
        depth = np.where(hit, fn / (np.float32(far) - fmn * dbuf), np.float32(0)).astype(np.float32)
        mask = (seg == bid) & hit
        mask_full = None
        if scene.full_mask:  # the object without the occluders
            for ob, _ in self._occluders:
                self._place(ob, None)
            _, _, _, _, seg2 = capture()
            mask_full = np.asarray(seg2).reshape(height, width) == bid
        return Raster(rgb=rgb, depth=depth, hit=hit, mask=mask, mask_full=mask_full)

    def close(self) -> None:
        """Disconnect pybullet and delete the temporary files (idempotent)."""
        if self._cid is not None:
            try:
                self._pb.disconnect(physicsClientId=self._cid)
            except Exception:  # already disconnected (e.g. at interpreter shutdown)
                pass
            self._cid = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
