"""The MuJoCo scene shared by the single and the batched env.

Everything here is used by both: loading the model, writing a task into a compiled model (no
recompilation), the initial state of an episode, and vectorised numpy functions that turn sensor
readings into observations, the action into mocap targets and gripper controls, and the physics
state into a divergence flag. Arrays carry a leading batch dimension ``N`` (1 for the single env).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from envs.tasks import SHAPES, Task

__all__ = [
    "ACTION_DIM",
    "FRAME_SKIP",
    "SCENE_XML",
    "Scene",
    "apply_task",
    "build_obs",
    "gripper_ctrl",
    "load_model",
    "mocap_targets",
    "obs_slices",
    "physics_error",
]

SCENE_XML = Path(__file__).parent / "assets" / "scene.xml"
FRAME_SKIP = 3
"""Physics steps per env step: 3 x 5 ms = a 15 ms control period (Meta-World: 12.5 ms)."""
TIMESTEP = 0.005
"""Physics step of scene.xml, seconds (checked when the model loads)."""
CONTROL_DT = FRAME_SKIP * TIMESTEP
ACTION_DIM = 4
ACTION_SCALE = 0.018
"""Metres the mocap target moves per env step at a full action (1.2 m/s)."""
MOCAP_LOW = np.array([-0.2, -0.25, 0.02])
MOCAP_HIGH = np.array([0.2, 0.25, 0.35])
HOME = np.array([-0.02, 0.0, 0.2])
"""Grip point at the start of every episode."""
FINGER_OPEN = 0.045
"""Half-opening of the gripper when fully open, metres (each finger's slide range)."""
TOUCH_SCALE = 5.0
"""Newtons at which the observed finger contact force reads tanh(1) = 0.76."""
MAX_QVEL = 1e3
"""Joint speeds above this (rad/s or m/s) count as diverged physics."""

# Shape class -> names of its geoms in object.xml.
_SHAPE_GEOMS: dict[str, tuple[str, ...]] = {
    "box": ("obj_box",),
    "cylinder": ("obj_cylinder",),
    "sphere": ("obj_sphere",),
    "capsule": ("obj_capsule",),
    "ellipsoid": ("obj_ellipsoid",),
    "l_block": ("obj_l_upright", "obj_l_foot"),
    "t_block": ("obj_t_base", "obj_t_stem"),
}
OBJECT_RGBA = np.array([0.92, 0.38, 0.12, 1.0])
# Shapes that roll get rolling friction (contact dimension 6); flat-sided ones need only sliding
# friction (3), which keeps their 4 to 8 table contacts cheap.
_CONDIM = {"sphere": 6, "capsule": 6, "ellipsoid": 6, "cylinder": 6}

_SENSORS = (
    "ee_pos",
    "ee_vel",
    "finger_left_pos",
    "finger_right_pos",
    "object_pos",
    "object_quat",
    "object_linvel",
    "object_angvel",
    "touch_left",
    "touch_right",
)
_ARM_JOINTS = ("j1", "j2", "j3", "j4", "j5", "j6")


@functools.cache
def _compiled() -> mujoco.MjModel:
    model = mujoco.MjModel.from_xml_path(str(SCENE_XML))
    if abs(model.opt.timestep - TIMESTEP) > 1e-12:
        raise ValueError(f"scene.xml: timestep {model.opt.timestep}; envs.scene expects {TIMESTEP}")
    if hasattr(mujoco.mjtDisableBit, "mjDSBL_AUTORESET"):
        # Let divergence show as NaN/huge values (detected and reported) instead of MuJoCo
        # silently resetting the state mid-step.
        model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_AUTORESET)
    return model


def load_model() -> mujoco.MjModel:
    """A fresh copy of the compiled scene (each env owns and edits its copy)."""
    return _copy_model(_compiled())


def _copy_model(model: mujoco.MjModel) -> mujoco.MjModel:
    return copy.copy(model)


@dataclass(frozen=True)
class Scene:
    """Indices into the compiled model: sensors, joints, geoms, the mocap body, the goal site."""

    sensor: dict[str, slice]
    nsensordata: int
    arm_qpos: np.ndarray
    finger_qpos: np.ndarray
    object_qpos: slice
    object_qvel: slice
    object_body: int
    shape_geoms: dict[str, tuple[int, ...]]
    goal_site: int
    nq: int
    nv: int
    nu: int
    timestep: float
    home_qpos: np.ndarray
    """Arm and finger joint positions at the start of an episode (the arm settled at HOME)."""

    @property
    def all_object_geoms(self) -> tuple[int, ...]:
        return tuple(g for ids in self.shape_geoms.values() for g in ids)


@functools.cache
def scene() -> Scene:
    """The (process-wide, immutable) indices of the scene."""
    m = _compiled()
    sensor = {}
    for name in _SENSORS:
        i = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SENSOR, name)
        adr, dim = int(m.sensor_adr[i]), int(m.sensor_dim[i])
        sensor[name] = slice(adr, adr + dim)

    def jnt_qpos(name: str) -> int:
        return int(m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)])

    obj_joint = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "object")
    qadr, vadr = int(m.jnt_qposadr[obj_joint]), int(m.jnt_dofadr[obj_joint])
    shape_geoms = {
        shape: tuple(mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, g) for g in names)
        for shape, names in _SHAPE_GEOMS.items()
    }
    arm_qpos = np.array([jnt_qpos(j) for j in _ARM_JOINTS])
    finger_qpos = np.array([jnt_qpos("finger_left"), jnt_qpos("finger_right")])
    return Scene(
        sensor=sensor,
        nsensordata=int(m.nsensordata),
        arm_qpos=arm_qpos,
        finger_qpos=finger_qpos,
        object_qpos=slice(qadr, qadr + 7),
        object_qvel=slice(vadr, vadr + 6),
        object_body=mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "object"),
        shape_geoms=shape_geoms,
        goal_site=mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "goal"),
        nq=int(m.nq),
        nv=int(m.nv),
        nu=int(m.nu),
        timestep=float(m.opt.timestep),
        home_qpos=_settle_home(m, arm_qpos, finger_qpos),
    )


def _settle_home(m: mujoco.MjModel, arm_qpos: np.ndarray, finger_qpos: np.ndarray) -> np.ndarray:
    """Arm joint angles with the grip point at HOME, pointing down, found once by simulating the
    weld pulling the hand there (no inverse kinematics at run time)."""
    model = _copy_model(m)
    data = mujoco.MjData(model)
    # A bent-elbow guess so that the weld pulls the arm into the elbow-up solution.
    data.qpos[arm_qpos] = [0.0, 0.35, 1.75, 1.04, 0.0, 0.0]
    data.qpos[finger_qpos] = FINGER_OPEN
    data.ctrl[:] = FINGER_OPEN
    mujoco.mj_forward(model, data)
    start = data.site_xpos[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "grip")].copy()
    for k in range(1200):
        alpha = min(1.0, k / 600)
        data.mocap_pos[0] = (1 - alpha) * start + alpha * HOME
        mujoco.mj_step(model, data)
    return data.qpos.copy()


# --------------------------------------------------------------------------------------------
# Tasks in the compiled model


def _shape_geometry(shape: str, s: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(geom size, geom position) of each geom of ``shape`` at half-width ``s``."""
    z = np.zeros(3)
    if shape == "box":
        return [(np.array([s, s, s]), z)]
    if shape == "cylinder":
        return [(np.array([s, s, 0.0]), z)]
    if shape == "sphere":
        return [(np.array([s, 0.0, 0.0]), z)]
    if shape == "capsule":  # lying along x: radius s, half-length 1.2 s
        return [(np.array([s, 1.2 * s, 0.0]), z)]
    if shape == "ellipsoid":
        return [(np.array([1.4 * s, s, s]), z)]
    if shape == "l_block":
        return [
            (np.array([0.5 * s, s, s]), np.array([-0.5 * s, 0.0, 0.0])),
            (np.array([0.75 * s, s, 0.5 * s]), np.array([0.75 * s, 0.0, -0.5 * s])),
        ]
    if shape == "t_block":
        return [
            (np.array([1.5 * s, s, 0.5 * s]), np.array([0.0, 0.0, -0.5 * s])),
            (np.array([0.5 * s, s, 0.5 * s]), np.array([0.0, 0.0, 0.5 * s])),
        ]
    raise ValueError(f"shape: got {shape!r}; allowed: {', '.join(SHAPES)}")


def _solid(gtype: str, size: np.ndarray) -> tuple[float, np.ndarray]:
    """Volume and inertia tensor per unit mass (about the centroid, geom frame) of a solid."""
    if gtype == "box":
        a, b, c = size
        return 8 * a * b * c, np.diag([b * b + c * c, a * a + c * c, a * a + b * b]) / 3
    if gtype == "ellipsoid":
        a, b, c = size
        v = 4 / 3 * np.pi * a * b * c
        return v, np.diag([b * b + c * c, a * a + c * c, a * a + b * b]) / 5
    if gtype == "sphere":
        r = size[0]
        return 4 / 3 * np.pi * r**3, np.eye(3) * 0.4 * r * r
    if gtype == "cylinder":  # axis z
        r, h = size[0], size[1]
        v = np.pi * r * r * 2 * h
        return v, np.diag([(3 * r * r + 4 * h * h) / 12] * 2 + [r * r / 2])
    if gtype == "capsule":  # axis z: a cylinder of half-length h and two hemispheres
        r, h = size[0], size[1]
        vc, vs = np.pi * r * r * 2 * h, 4 / 3 * np.pi * r**3
        big_h = 2 * h
        axial = vc * r * r / 2 + vs * 0.4 * r * r
        perp = vc * (r * r / 4 + big_h * big_h / 12) + vs * (
            0.4 * r * r + big_h * big_h / 4 + 3 * big_h * r / 8
        )
        return vc + vs, np.diag([perp, perp, axial]) / (vc + vs)
    raise ValueError(f"geom type {gtype!r} has no inertia formula")


_GEOM_TYPE = {
    "box": "box",
    "cylinder": "cylinder",
    "sphere": "sphere",
    "capsule": "capsule",
    "ellipsoid": "ellipsoid",
    "l_block": "box",
    "t_block": "box",
}


def _mass_properties(
    task: Task, geoms: list[tuple[np.ndarray, np.ndarray]], rots: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre of mass, principal inertia and its frame (quat) of the object in its body frame."""
    gtype = _GEOM_TYPE[task.shape]
    vols, tensors = [], []
    for (size, _), rot in zip(geoms, rots, strict=True):
        v, inertia = _solid(gtype, size)
        vols.append(v)
        tensors.append(rot @ inertia @ rot.T)
    weights = np.array(vols) / sum(vols)
    com = sum(w * pos for w, (_, pos) in zip(weights, geoms, strict=True))
    total = np.zeros((3, 3))
    for w, (_, pos), inertia in zip(weights, geoms, tensors, strict=True):
        d = pos - com
        total += w * (inertia + np.dot(d, d) * np.eye(3) - np.outer(d, d))
    total *= task.mass
    eigvals, eigvecs = np.linalg.eigh(total)
    if np.linalg.det(eigvecs) < 0:
        eigvecs[:, 0] = -eigvecs[:, 0]
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(eigvecs).ravel())
    return np.asarray(com), eigvals, quat


def _geom_bounds(gtype: str, size: np.ndarray) -> np.ndarray:
    """Half-extents of the geom's local bounding box."""
    if gtype in ("box", "ellipsoid"):
        return size.copy()
    if gtype == "sphere":
        return np.full(3, size[0])
    if gtype == "cylinder":
        return np.array([size[0], size[0], size[1]])
    return np.array([size[0], size[0], size[0] + size[1]])  # capsule


def _bounding_radius(gtype: str, size: np.ndarray) -> float:
    """Radius of the geom's bounding sphere (used by the collision broad phase)."""
    if gtype == "box":
        return float(np.linalg.norm(size))
    if gtype == "cylinder":
        return float(np.hypot(size[0], size[1]))
    if gtype == "capsule":
        return float(size[0] + size[1])
    return float(size.max()) if gtype == "ellipsoid" else float(size[0])


def apply_task(model: mujoco.MjModel, data: mujoco.MjData, task: Task) -> None:
    """Write ``task``'s object and goal into ``model`` in place (no recompilation).

    The task's shape geoms get their sizes, positions, friction, collision and colour; the other
    shapes' geoms are disabled (contype/conaffinity 0) and hidden (alpha 0). The body gets the
    task's mass, centre of mass and principal inertia; derived constants are recomputed
    (``mj_setConst``, which uses ``data`` as scratch: reset it afterwards).
    """
    sc = scene()
    for g in sc.all_object_geoms:
        model.geom_contype[g] = 0
        model.geom_conaffinity[g] = 0
        model.geom_rgba[g, 3] = 0.0
    geoms = _shape_geometry(task.shape, task.size)
    gtype = _GEOM_TYPE[task.shape]
    rots = []
    for g, (size, pos) in zip(sc.shape_geoms[task.shape], geoms, strict=True):
        model.geom_size[g] = size
        model.geom_pos[g] = pos
        model.geom_friction[g, 0] = task.friction
        model.geom_condim[g] = _CONDIM.get(task.shape, 3)
        model.geom_contype[g] = 1
        model.geom_conaffinity[g] = 1
        model.geom_rgba[g] = OBJECT_RGBA
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, model.geom_quat[g])
        rots.append(rot.reshape(3, 3))
        half = _geom_bounds(gtype, size)
        model.geom_rbound[g] = _bounding_radius(gtype, size)
        model.geom_aabb[g] = np.concatenate([np.zeros(3), half])
    com, inertia, iquat = _mass_properties(task, geoms, rots)
    b = sc.object_body
    model.body_mass[b] = task.mass
    model.body_ipos[b] = com
    model.body_inertia[b] = inertia
    model.body_iquat[b] = iquat
    model.site_pos[sc.goal_site] = task.goal
    mujoco.mj_setConst(model, data)


def initial_qpos(task: Task) -> np.ndarray:
    """Joint positions at the start of an episode of ``task``: the arm at home, the gripper open,
    the object resting at its initial pose."""
    sc = scene()
    qpos = sc.home_qpos.copy()
    half_yaw = 0.5 * task.object_yaw
    qpos[sc.object_qpos] = [
        task.object_xy[0],
        task.object_xy[1],
        task.size,
        np.cos(half_yaw),
        0.0,
        0.0,
        np.sin(half_yaw),
    ]
    return qpos


# --------------------------------------------------------------------------------------------
# Vectorised step functions (batch dimension first)


def validate_actions(action: object, num: int | None) -> np.ndarray:
    """The action(s) as float64, shape (ACTION_DIM,) or (num, ACTION_DIM), clipped to [-1, 1];
    ValueError for a wrong shape or a non-finite value."""
    expected = (ACTION_DIM,) if num is None else (num, ACTION_DIM)
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"action: expected a float array of shape {expected}; got {action!r}"
        ) from e
    if arr.shape != expected:
        raise ValueError(f"action: expected shape {expected}; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"action: expected finite values of shape {expected}; got {arr}")
    # np.minimum/maximum are several times cheaper than np.clip on small arrays.
    return np.minimum(np.maximum(arr, -1.0), 1.0)


def start_episode(model: mujoco.MjModel, data: mujoco.MjData, task: Task) -> None:
    """Put ``data`` in the starting state of an episode of ``task`` (already applied to
    ``model``): arm at home, gripper open, object at its initial pose; derived quantities
    computed. The single and the batched env both start their episodes here."""
    mujoco.mj_resetData(model, data)
    data.qpos[:] = initial_qpos(task)
    data.mocap_pos[0] = HOME
    data.ctrl[:] = FINGER_OPEN
    mujoco.mj_forward(model, data)


def mocap_targets(mocap: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Next mocap positions (N, 3): move by ACTION_SCALE x the clipped action, inside the
    workspace box."""
    # Actions arrive clipped to [-1, 1]; np.minimum/maximum are several times cheaper than clip.
    return np.minimum(np.maximum(mocap + action[:, :3] * ACTION_SCALE, MOCAP_LOW), MOCAP_HIGH)


def gripper_ctrl(action: np.ndarray) -> np.ndarray:
    """Finger position targets (N, 2): action -1 opens fully, +1 closes."""
    target = (0.5 * FINGER_OPEN) * (1.0 - action[:, 3:4])
    return np.concatenate([target, target], axis=1)


_OBS_PARTS: tuple[tuple[str, int], ...] = (
    ("ee_pos", 3),
    ("gripper_opening", 1),
    ("finger_contact", 2),
    ("object_pos", 3),
    ("object_quat", 4),
    ("object_rel_pos", 3),
    ("ee_vel", 3),
    ("object_linvel", 3),
    ("object_angvel", 3),
    ("prev_action", 4),
)
_TASK_PARTS: tuple[tuple[str, int], ...] = (
    ("goal_pos", 3),
    ("shape_geometry", 3),
    ("size", 1),
    ("mass", 1),
    ("friction", 1),
)


def obs_slices(reveal_task: bool) -> dict[str, slice]:
    """Named slices of the observation vector."""
    parts = _OBS_PARTS + (_TASK_PARTS if reveal_task else ())
    slices, start = {}, 0
    for name, dim in parts:
        slices[name] = slice(start, start + dim)
        start += dim
    return slices


class Readings:
    """Sensor readings of N envs: named (N, dim) views into the (N, nsensordata) array."""

    __slots__ = ("sensordata",)

    def __init__(self, sensordata: np.ndarray) -> None:
        self.sensordata = sensordata

    def _get(self, name: str) -> np.ndarray:
        return self.sensordata[:, scene().sensor[name]]

    @property
    def ee_pos(self) -> np.ndarray:
        return self._get("ee_pos")

    @property
    def object_pos(self) -> np.ndarray:
        return self._get("object_pos")

    @property
    def touch(self) -> np.ndarray:
        """Contact force on the left and right finger pads, newtons (N, 2)."""
        return self.sensordata[:, _layout().touch]


def read_sensors(sensordata: np.ndarray) -> Readings:
    """Named views of (N, nsensordata) readings."""
    return Readings(sensordata)


@dataclass(frozen=True)
class _Layout:
    """Gather indices from sensordata columns into observation columns."""

    gather: np.ndarray  # sensordata column of each of the first `direct` observation columns
    direct: int
    opening: tuple[int, int]
    touch: np.ndarray
    ee: slice
    obj: slice
    quat: slice


@functools.cache
def _layout() -> _Layout:
    sens, obs = scene().sensor, obs_slices(False)
    direct = obs["prev_action"].start
    gather = np.zeros(direct, dtype=np.intp)
    for name in ("ee_pos", "object_pos", "object_quat", "ee_vel", "object_linvel", "object_angvel"):
        gather[obs[name]] = np.arange(sens[name].start, sens[name].stop)
    # Derived columns (opening, contact, relative position) are gathered from a placeholder and
    # overwritten by build_obs.
    return _Layout(
        gather=gather,
        direct=direct,
        opening=(sens["finger_left_pos"].start, sens["finger_right_pos"].start),
        touch=np.array([sens["touch_left"].start, sens["touch_right"].start]),
        ee=sens["ee_pos"],
        obj=sens["object_pos"],
        quat=obs["object_quat"],
    )


_BASE_SLICES = obs_slices(False)
_OPEN = _BASE_SLICES["gripper_opening"].start
_CONTACT = _BASE_SLICES["finger_contact"]
_REL = _BASE_SLICES["object_rel_pos"]


def build_obs(r: Readings, prev_action: np.ndarray, task_features: np.ndarray | None) -> np.ndarray:
    """Observations (N, obs_dim) as float32, laid out as :func:`obs_slices` says; never NaN."""
    lay, sd = _layout(), r.sensordata
    extra = 0 if task_features is None else task_features.shape[1]
    obs = np.empty((len(sd), lay.direct + prev_action.shape[1] + extra), dtype=np.float32)
    obs[:, : lay.direct] = sd[:, lay.gather]
    obs[:, _OPEN] = sd[:, lay.opening[0]] + sd[:, lay.opening[1]]
    obs[:, _CONTACT] = np.tanh(sd[:, lay.touch] * (1.0 / TOUCH_SCALE))
    obs[:, _REL] = sd[:, lay.obj] - sd[:, lay.ee]
    obs[:, lay.direct : lay.direct + prev_action.shape[1]] = prev_action
    if task_features is not None:
        obs[:, lay.direct + prev_action.shape[1] :] = task_features
    flip = obs[:, lay.quat.start] < 0
    if flip.any():  # q and -q are the same rotation: report the one with w >= 0
        obs[flip, lay.quat] *= -1.0
    if not np.isfinite(obs).all():
        obs = np.nan_to_num(obs, nan=0.0, posinf=1e6, neginf=-1e6)
    return obs


def physics_error(qvel: np.ndarray, object_pos: np.ndarray) -> np.ndarray:
    """(N,) bool: the physics diverged (non-finite or huge speeds, the object flung away).

    NaN anywhere in the state reaches the velocities within a step (the mass matrix couples
    every joint); comparisons with NaN are False, so NaN counts as diverged."""
    fine = np.abs(qvel).max(axis=1) < MAX_QVEL
    fine &= np.abs(object_pos).max(axis=1) < 2.0
    return ~fine
