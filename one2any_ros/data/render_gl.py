"""OpenGL renderer (moderngl, offscreen): a drop-in for :class:`render.Renderer` where pybullet cannot go
(docs/architecture.md, Renderers: a lent GPU machine renders on EGL; a CPU machine can use Mesa's
llvmpipe through EGL too).

Same API, conventions and randomness as the pybullet renderer: ``render(obj, T_cam_obj, K, width, height,
*, background, light, occluders, depth_noise, rgb_noise, full_mask, rng)`` returns the same keys and dtypes
(rgb uint8, depth/depth_clean float32 metres with 0 = invalid, mask/mask_full bool, visib_fract, K,
T_cam_obj). Both are :class:`scene.SceneRenderer`s: the scene (background plane, distractors, occluder
poses, light) and the finished frame (compositing, noise) are shared; this module only rasterises. Given the
same ``rng`` both renderers draw the same scene, so they can be compared directly.

What is rasterised: the object, the distractor boxes/spheres and the occluder boxes, into three attachments
of one framebuffer: RGBA8 colour, RG32F (camera-frame z written by the fragment shader, an integer id:
0 the object, 1.. distractors/occluders, -1 nothing) and a depth buffer for the depth test. Metric depth is
the perspective-correct interpolated z of the fragment at the pixel centre, so it does not depend on the
near/far planes. Projection from K (skew included), pixel centres at integer coordinates (OpenCV), the
image's row 0 written to the framebuffer's row 0 (no flip on read-back). Back faces are culled like
pybullet's TinyRenderer does (faces are counter-clockwise seen from outside).

Shading (TinyRenderer's model, ``light`` keys as :func:`scene.random_light` gives them):
``colour = texture · (ambient + (diffuse · max(n·L, 0) + specular · max(r_z, 0)²) · light_colour)``,
n the interpolated world (= camera) normal, L the unit light direction, r the reflection of L about n.
Textures are sampled at the nearest texel like TinyRenderer (``texture_filter="nearest"``, the default:
colours then agree with the pybullet renderer's to about one grey level) or with trilinear mipmapping
(``"trilinear"``: less aliasing of small, high-frequency textures, but a different image distribution from
the pybullet renderer's, and texture atlases bleed at their seams). The light's ``shadow`` key is ignored
(no shadows; ``random_light`` never asks for them).

Context: ``moderngl.create_standalone_context`` on EGL first (``ONE2ANY_GL_BACKEND`` overrides: egl | x11 |
default). moderngl is imported lazily; a missing library or driver raises :class:`GlUnavailable`.
Fork: a context is per process, and a process forked from one that ever made a context (even one since
released) hangs making its own (measured with Mesa's EGL: the child inherits an initialised display whose
threads did not survive the fork). So make the renderer inside each DataLoader worker (``PairSampler``
does), and start workers with the 'spawn' or 'forkserver' multiprocessing context whenever the parent
renders with GL too (validation pairs, :func:`gl_available`); a forked child of such a parent gets
GlUnavailable (with this advice) instead of a hang.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from one2any_ros.data.objects import ObjectSpec
from one2any_ros.data.render import Renderer
from one2any_ros.data.scene import Raster, SceneDraw, SceneRenderer
from one2any_ros.data.sensor import MAX_RANGE_M

_NEAR, _FAR_PAD = 0.02, 1.0  # clip planes (m): depth comes from the z attachment; they only bracket the scene
_OBJ_ID = 0


class GlUnavailable(RuntimeError):
    """No OpenGL 3.3 context could be created (moderngl/glcontext missing, no EGL/GL library or driver)."""


def create_context(backend: str | None = None):
    """A standalone moderngl context (OpenGL >= 3.3). ``backend``: "egl", "x11", "default" (moderngl's
    platform default) or None: $ONE2ANY_GL_BACKEND, else EGL then the default. Raises GlUnavailable."""
    try:
        import moderngl
    except Exception as e:  # ImportError, or a broken binary wheel
        raise GlUnavailable(f"moderngl is not importable: {e}") from e
    global _CONTEXT_PID
    if _CONTEXT_PID is not None and _CONTEXT_PID != os.getpid():
        raise GlUnavailable(
            f"this process was forked from one (pid {_CONTEXT_PID}) that had made a GL context; EGL/Mesa "
            "state does not survive a fork (a new context hangs): start the workers with the 'spawn' or "
            "'forkserver' multiprocessing context, or make no context before forking")
    choice = backend or os.environ.get("ONE2ANY_GL_BACKEND") or None
    order = [choice] if choice else ["egl", "default"]
    errors = []
    for b in order:
        try:
            kw = {} if b == "default" else {"backend": b}
            ctx = moderngl.create_standalone_context(require=330, **kw)
        except Exception as e:  # glcontext raises plain Exceptions with the EGL/GLX error
            errors.append(f"{b}: {type(e).__name__}: {e}")
            continue
        _CONTEXT_PID = os.getpid()
        return ctx
    raise GlUnavailable("no OpenGL 3.3 context: " + "; ".join(errors))


_CONTEXT_PID: int | None = None  # the process that made a context (a forked child inherits the value)


_GL_STATUS: dict[str | None, str | None] = {}


def gl_unavailable_reason(backend: str | None = None) -> str | None:
    """None when a context can be created in this process (tried once, cached), else why not. The test
    context counts as one: fork no GL workers from this process afterwards (see the module doc)."""
    if backend not in _GL_STATUS:
        try:
            create_context(backend).release()
            _GL_STATUS[backend] = None
        except GlUnavailable as e:
            _GL_STATUS[backend] = str(e)
    return _GL_STATUS[backend]


def gl_available(backend: str | None = None) -> bool:
    return gl_unavailable_reason(backend) is None


def make_renderer(kind: str = "pybullet", *, seed: int = 0, **kw):
    """A renderer by name: "pybullet" (:class:`render.Renderer`), "gl" (:class:`GlRenderer`; raises
    GlUnavailable without a context) or "auto" (GL when a context can be created, else pybullet)."""
    if kind == "pybullet":
        return Renderer(seed=seed, **kw)
    if kind == "gl":
        return GlRenderer(seed=seed, **kw)
    if kind == "auto":
        try:
            return GlRenderer(seed=seed, **kw)
        except GlUnavailable as e:
            try:
                return Renderer(seed=seed, **kw)
            except ImportError as e2:
                raise GlUnavailable(f"{e}; and the pybullet renderer cannot be used either: {e2}") from e2
    raise ValueError(f"unknown renderer {kind!r} (pybullet|gl|auto)")


# --------------------------------------------------------------------------------------------------
# projection and meshes (numpy)


def gl_projection(K: np.ndarray, width: int, height: int, near: float, far: float) -> np.ndarray:
    """(4,4) clip-from-camera matrix for an OpenCV camera (x right, y down, z forward): pixel (u, v) with its
    centre at integer coordinates lands on framebuffer pixel (u, v), row v counted from the framebuffer's
    first row (so the read-back needs no flip); NDC z -1 at ``near``, +1 at ``far``; w = z."""
    fx, fy, cx, cy, sk = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    return np.array(
        [
            [2 * fx / width, 2 * sk / width, 2 * (cx + 0.5) / width - 1, 0],
            [0, 2 * fy / height, 2 * (cy + 0.5) / height - 1, 0],
            [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, 1, 0],
        ]
    )


def box_mesh(half_extents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(24,8) float32 [pos, normal, uv] per-face vertices and (12,3) int32 faces (CCW from outside) of a box;
    each face maps the whole texture."""
    he = np.asarray(half_extents, float)
    verts, faces = [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            n = np.zeros(3)
            n[axis] = sign
            a, b = (axis + 1) % 3, (axis + 2) % 3
            ea, eb = np.zeros(3), np.zeros(3)
            ea[a], eb[b] = 1.0, 1.0
            if sign < 0:
                ea, eb = eb, ea  # keep (ea x eb) = n so the corner order below is CCW from outside
            base = len(verts)
            for s, t in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = (n + (2 * s - 1) * ea + (2 * t - 1) * eb) * he
                verts.append(np.concatenate([p, n, [s, t]]))
            faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    return np.asarray(verts, np.float32), np.asarray(faces, np.int32)


def sphere_mesh(radius: float, n_lat: int = 16, n_lon: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """UV sphere: (V,8) float32 [pos, normal, uv] and (F,3) int32 faces, CCW from outside."""
    th = np.linspace(0, np.pi, n_lat + 1)
    ph = np.linspace(0, 2 * np.pi, n_lon + 1)
    T, P = np.meshgrid(th, ph, indexing="ij")
    n = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1).reshape(-1, 3)
    uv = np.stack([P / (2 * np.pi), 1 - T / np.pi], -1).reshape(-1, 2)
    idx = np.arange((n_lat + 1) * (n_lon + 1)).reshape(n_lat + 1, n_lon + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    verts = np.concatenate([n * radius, n, uv], 1).astype(np.float32)
    return verts, faces.astype(np.int32)


_VS = """
#version 330
uniform mat4 u_mv;    // object -> camera (rigid)
uniform mat4 u_proj;  // camera -> clip
in vec3 in_pos;
in vec3 in_nrm;
in vec2 in_uv;
out vec3 v_nrm;
out vec2 v_uv;
out float v_z;
void main() {
    vec4 pc = u_mv * vec4(in_pos, 1.0);
    v_nrm = mat3(u_mv) * in_nrm;
    v_uv = in_uv;
    v_z = pc.z;
    gl_Position = u_proj * pc;
}
"""

_FS = """
#version 330
uniform sampler2D u_tex;
uniform vec3 u_light_dir;    // unit, towards the light, camera frame
uniform vec3 u_light_color;
uniform vec3 u_coef;         // ambient, diffuse, specular
uniform float u_id;
in vec3 v_nrm;
in vec2 v_uv;
in float v_z;
layout(location = 0) out vec4 f_rgb;
layout(location = 1) out vec2 f_zid;
void main() {
    vec3 n = normalize(v_nrm);
    float nl = dot(n, u_light_dir);
    vec3 r = normalize(2.0 * nl * n - u_light_dir);
    float spec = pow(max(r.z, 0.0), 2.0);
    vec3 c = texture(u_tex, v_uv).rgb;
    vec3 shade = u_coef.x + (u_coef.y * max(nl, 0.0) + u_coef.z * spec) * u_light_color;
    f_rgb = vec4(floor(c * shade * 255.0 + 1e-3) / 255.0, 1.0);  // truncated to 8 bits like TinyRenderer
    f_zid = vec2(v_z, u_id);
}
"""


class _Mesh:
    """GPU buffers of one textured mesh."""

    def __init__(self, ctx, prog, verts: np.ndarray, faces: np.ndarray, texture=None) -> None:
        self.vbo = ctx.buffer(np.ascontiguousarray(verts, np.float32).tobytes())
        self.ibo = ctx.buffer(np.ascontiguousarray(faces, np.int32).tobytes())
        self.vao = ctx.vertex_array(prog, [(self.vbo, "3f 3f 2f", "in_pos", "in_nrm", "in_uv")], self.ibo,
                                    index_element_size=4)
        self.texture = texture  # owned (released with the mesh) when not None

    def release(self) -> None:
        for r in (self.vao, self.vbo, self.ibo, self.texture):
            if r is not None:
                r.release()


class GlRenderer(SceneRenderer):
    """Offscreen OpenGL renderer with :class:`render.Renderer`'s API; reusable; caches uploaded objects by
    ``ObjectSpec.fingerprint`` (LRU). One GL context per instance (per process)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        max_cached_objects: int = 32,
        max_range: float = MAX_RANGE_M,
        backend: str | None = None,
        texture_filter: str = "nearest",
        ctx=None,
    ) -> None:
        if texture_filter not in ("nearest", "trilinear"):
            raise ValueError(f"unknown texture_filter {texture_filter!r} (nearest|trilinear)")
        self.texture_filter = texture_filter
        self._ctx = None
        self._objects: OrderedDict[str, _Mesh] = OrderedDict()
        self._fbos: OrderedDict[tuple[int, int], tuple] = OrderedDict()
        self._distractors: list[tuple[_Mesh, np.ndarray]] = []
        self._occluders: list[tuple[_Mesh, np.ndarray]] = []
        self._tex_ids: list = []
        self._prog = None
        self._ctx = ctx if ctx is not None else create_context(backend)
        self._own_ctx = ctx is None
        super().__init__(seed=seed, max_range=max_range)
        self._max_cached = max_cached_objects
        with self._ctx:
            self._make_resources()

    def _make_resources(self) -> None:
        ctx_ = self._ctx
        self._prog = ctx_.program(vertex_shader=_VS, fragment_shader=_FS)
        self._prog["u_tex"].value = 0
        self._tex_ids = [self._upload_texture(t) for t in self._textures]
        for kind, he in self._distractor_shapes:  # (mesh, half extents), the shared pool's shapes
            shape = box_mesh(he) if kind == "box" else sphere_mesh(float(he[0]))
            self._distractors.append((_Mesh(ctx_, self._prog, *shape), he))
        for he in self._occluder_half_extents:
            self._occluders.append((_Mesh(ctx_, self._prog, *box_mesh(he)), he))

    @property
    def info(self) -> dict:
        """The GL context's vendor/renderer/version strings."""
        with self._ctx:
            return {k: self._ctx.info[k] for k in ("GL_VENDOR", "GL_RENDERER", "GL_VERSION")}

    # -- resources ---------------------------------------------------------------------------------
    def _upload_texture(self, img: np.ndarray):
        """RGB uint8 image (row 0 = top) -> GL texture; t = 0 is the image's bottom row (OBJ v-up UVs)."""
        import moderngl

        img = np.ascontiguousarray(np.flipud(np.asarray(img, np.uint8)[:, :, :3]))
        tex = self._ctx.texture((img.shape[1], img.shape[0]), 3, img.tobytes(), alignment=1)
        if self.texture_filter == "trilinear":
            tex.build_mipmaps()
            tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        else:
            tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
        tex.repeat_x = tex.repeat_y = True
        return tex

    def _mesh_for(self, obj: ObjectSpec) -> _Mesh:
        key = obj.fingerprint
        if key in self._objects:
            self._objects.move_to_end(key)
            return self._objects[key]
        while len(self._objects) >= self._max_cached:
            self._objects.popitem(last=False)[1].release()
        verts = np.concatenate([np.asarray(obj.vertices, np.float32), np.asarray(obj.normals, np.float32),
                                np.asarray(obj.uvs, np.float32)], 1)
        mesh = _Mesh(self._ctx, self._prog, verts, obj.faces, self._upload_texture(obj.texture))
        self._objects[key] = mesh
        return mesh

    def _fbo(self, width: int, height: int):
        key = (width, height)
        f = self._fbos.get(key)
        if f is None:
            while len(self._fbos) >= 4:
                for r in self._fbos.popitem(last=False)[1]:
                    r.release()
            ctx = self._ctx
            rgb = ctx.renderbuffer((width, height), 4)
            zid = ctx.renderbuffer((width, height), 2, dtype="f4")
            dep = ctx.depth_renderbuffer((width, height))
            fbo = ctx.framebuffer(color_attachments=[rgb, zid], depth_attachment=dep)
            f = (fbo, rgb, zid, dep)
            self._fbos[key] = f
        else:
            self._fbos.move_to_end(key)
        return f[0]

    # -- rendering -------------------------------------------------------------------------------
    def _draw(self, fbo, proj: np.ndarray, items: list, lt: dict) -> None:
        """items: (mesh, T (4,4), texture (GL texture), id)."""
        ctx, prog = self._ctx, self._prog
        import moderngl

        fbo.use()
        fbo.viewport = (0, 0) + fbo.size
        # colour 0 -> (0,0,0,0) (the -1 clamps), colour 1 -> (z 0, id -1)
        fbo.clear(0.0, -1.0, 0.0, 0.0, depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        ctx.disable(moderngl.BLEND)
        ctx.front_face = "cw"  # CCW-from-outside faces are clockwise in the framebuffer (its y runs down)
        ctx.cull_face = "back"
        prog["u_proj"].write(proj.T.astype("f4").tobytes())
        L = np.asarray(lt["direction"], np.float64)
        L = L / max(float(np.linalg.norm(L)), 1e-6)
        prog["u_light_dir"].value = tuple(map(float, L))
        prog["u_light_color"].value = tuple(float(c) for c in lt["color"])
        prog["u_coef"].value = (float(lt["ambient"]), float(lt["diffuse"]), float(lt["specular"]))
        for mesh, T, tex, oid in items:
            prog["u_mv"].write(np.asarray(T, np.float64).T.astype("f4").tobytes())
            prog["u_id"].value = float(oid)
            tex.use(0)
            mesh.vao.render(moderngl.TRIANGLES)

    def _read(self, fbo, width: int, height: int, rgb: bool = True):
        zid = np.frombuffer(fbo.read(components=2, attachment=1, dtype="f4"), np.float32)
        zid = zid.reshape(height, width, 2)
        col = None
        if rgb:
            col = np.frombuffer(fbo.read(components=3, attachment=0), np.uint8)
            col = col.reshape(height, width, 3).copy()
        return col, zid[..., 0].copy(), np.rint(zid[..., 1]).astype(np.int32)

    def _rasterise(self, scene: SceneDraw) -> Raster:
        if self._ctx is None:
            raise RuntimeError("GlRenderer.render after close()")
        width, height = scene.width, scene.height
        proj = gl_projection(scene.K, width, height, _NEAR, self.max_range + _FAR_PAD)
        mask_full = None
        with self._ctx:  # current for these calls (another renderer's context may have been made since)
            mesh = self._mesh_for(scene.obj)
            items = [(mesh, scene.T_cam_obj, mesh.texture, _OBJ_ID)]
            for j, (idx, Td, tex) in enumerate(scene.distractors):
                items.append((self._distractors[idx][0], Td, self._tex_ids[tex % len(self._tex_ids)], 1 + j))
            for j, (idx, T, tex) in enumerate(scene.occluders):
                items.append((self._occluders[idx][0], T, self._tex_ids[tex], 100 + j))
            fbo = self._fbo(width, height)
            self._draw(fbo, proj, items, scene.light)
            rgb, depth, ids = self._read(fbo, width, height)
            if scene.full_mask:
                self._draw(fbo, proj, items[:1], scene.light)  # the object alone
                mask_full = self._read(fbo, width, height, rgb=False)[2] == _OBJ_ID
        hit = ids >= 0
        depth[~hit] = 0
        return Raster(rgb=rgb, depth=depth, hit=hit, mask=ids == _OBJ_ID, mask_full=mask_full)

    def close(self) -> None:
        """Release every GL object and the context (idempotent)."""
        if self._ctx is None:
            return
        try:
            with self._ctx:
                self._release_resources()
            if self._own_ctx:
                self._ctx.release()
        except Exception:  # interpreter shutdown, or a context already lost
            pass
        self._objects.clear()
        self._fbos.clear()
        self._ctx = None

    def _release_resources(self) -> None:
        for m in self._objects.values():
            m.release()
        for m, _ in self._distractors + self._occluders:
            m.release()
        for t in self._tex_ids:
            t.release()
        for f in self._fbos.values():
            for r in f:
                r.release()
        if self._prog is not None:
            self._prog.release()

    def __enter__(self) -> "GlRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
