"""Videos of trials: episode 1 beside episode K (before and after adaptation), labelled frames.

Frames come from the env's ``render_mode="rgb_array"``; every frame gets a banner with the
episode index, whether the episode has succeeded so far, and the task's object. MP4s are written
with imageio's ffmpeg plugin (imageio-ffmpeg), so this works headless (``MUJOCO_GL=egl``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from meta_rl.task_envs.family import find_task_env
from meta_rl.trial import AdaptiveAgent, run_trial

__all__ = [
    "EpisodeFrames",
    "describe_object",
    "describe_task",
    "label_frame",
    "record_trial",
    "render_adaptation_video",
    "render_episode_video",
    "side_by_side",
    "write_mp4",
]

_OBJECT_FIELDS = ("object_name", "object", "obj_name", "shape", "name")
_MIN_WIDTH = 256  # frames narrower than this are upscaled so the banner text stays readable


@dataclass
class EpisodeFrames:
    """The rendered frames of one episode and, per frame, whether it had succeeded by then."""

    episode: int  # 1-based index within the trial
    frames: list[np.ndarray] = field(default_factory=list)
    success_so_far: list[bool] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return bool(self.success_so_far and self.success_so_far[-1])


def describe_task(task: Any) -> str:
    """A short human-readable name of a task's object (``object_name`` or a similar field)."""
    for name in _OBJECT_FIELDS:
        value = getattr(task, name, None)
        if isinstance(value, str) and value:
            return value
    if dataclasses.is_dataclass(task) and not isinstance(task, type):
        for f in dataclasses.fields(task):
            value = getattr(task, f.name)
            if isinstance(value, str) and value:
                return value
    text = repr(task)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_object(task: Any) -> str:
    """The object's name with its size, mass and friction when the task has them."""
    name = describe_task(task)
    size, mass, friction = (getattr(task, f, None) for f in ("size", "mass", "friction"))
    if all(isinstance(v, (int, float)) for v in (size, mass, friction)):
        assert isinstance(size, (int, float)) and isinstance(mass, (int, float))
        return f"{name}, {2 * size * 100:.1f} cm, {mass * 1000:.0f} g, friction {friction:.2f}"
    return name


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has a fixed-size default font
        return ImageFont.load_default()


def _upscale(frame: np.ndarray) -> np.ndarray:
    width = frame.shape[1]
    if width >= _MIN_WIDTH:
        return frame
    factor = -(-_MIN_WIDTH // width)
    return np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)


def label_frame(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The frame (upscaled if small) under a dark banner holding ``lines`` of white text."""
    img = np.ascontiguousarray(_upscale(np.asarray(frame, dtype=np.uint8)[..., :3]))
    height, width = img.shape[:2]
    size = max(10, min(16, width // 24))
    banner = (size + 4) * len(lines) + 4
    canvas = Image.new("RGB", (width, height + banner), (20, 20, 20))
    canvas.paste(Image.fromarray(img), (0, banner))
    draw = ImageDraw.Draw(canvas)
    font = _font(size)
    for i, line in enumerate(lines):
        draw.text((4, 2 + i * (size + 4)), line, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def side_by_side(left: Sequence[np.ndarray], right: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Frames of two clips placed side by side; the shorter clip holds its last frame."""
    if not left or not right:
        raise ValueError("side_by_side: both clips need at least one frame")
    n = max(len(left), len(right))
    out = []
    for i in range(n):
        a = left[min(i, len(left) - 1)]
        b = right[min(i, len(right) - 1)]
        h = max(a.shape[0], b.shape[0])
        gap = np.full((h, 8, 3), 255, dtype=np.uint8)
        out.append(np.concatenate([_pad_to(a, h), gap, _pad_to(b, h)], axis=1))
    return out


def _pad_to(frame: np.ndarray, height: int) -> np.ndarray:
    if frame.shape[0] == height:
        return frame
    pad = np.zeros((height - frame.shape[0], frame.shape[1], 3), dtype=np.uint8)
    return np.concatenate([frame, pad], axis=0)


def write_mp4(frames: Sequence[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write RGB frames to an H.264 MP4 (padded to even sizes, which yuv420p needs)."""
    if not frames:
        raise ValueError("write_mp4: no frames to write")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    h2, w2 = h + h % 2, w + w % 2
    writer: Any
    with imageio.get_writer(
        str(out), format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=1
    ) as writer:
        for frame in frames:
            if frame.shape[:2] != (h, w):
                raise ValueError(f"write_mp4: frame of shape {frame.shape}; expected {(h, w)}")
            padded = np.zeros((h2, w2, 3), dtype=np.uint8)
            padded[:h, :w] = frame[..., :3]
            writer.append_data(padded)
    return out


def _make_render_env(
    env_id: str,
    env_kwargs: Mapping[str, Any],
    camera_name: str | None,
    size: tuple[int, int] | None,
) -> gym.Env[Any, Any]:
    kwargs = {**dict(env_kwargs), "render_mode": "rgb_array"}
    if camera_name is not None:
        kwargs["camera_name"] = camera_name
    if size is not None:
        kwargs["width"], kwargs["height"] = size
    try:
        return gym.make(env_id, **kwargs)
    except TypeError as e:
        raise ValueError(
            f"env {env_id!r} cannot be made for a video with {sorted(kwargs)}: {e}; the "
            "constructor needs render_mode (and camera_name, width, height when camera_name "
            "or video_size is set)"
        ) from e


def _render(env: gym.Env[Any, Any]) -> np.ndarray:
    try:
        frame = env.render()
    except gym.error.Error as e:  # e.g. DependencyNotInstalled: pygame
        raise ValueError(f"the env cannot render an rgb_array frame: {e}") from e
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise ValueError(
            "the env did not return an RGB frame from render(): it must support "
            "render_mode='rgb_array'"
        )
    return frame


class _FilmedEnvs:
    """The filmed env and its unfilmed copies, stepped by the trial loop as a vector env.

    A sub-environment whose episode ended is not stepped again until the next reset (the loop
    masks its rows; single envs have no autoreset). After the reset and after every step of
    the filmed env (sub-environment 0) during an episode in ``wanted``, its frame is kept.
    """

    def __init__(self, envs: list[gym.Env[Any, Any]], wanted: Sequence[int]) -> None:
        self.envs = envs
        self.num_envs = len(envs)
        self.wanted = set(wanted)
        self.clips: list[EpisodeFrames] = []
        self._clip: EpisodeFrames | None = None
        self._episode = 0
        self._succeeded = False
        self._ended = np.zeros(self.num_envs, dtype=bool)
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        first = [
            e.reset(seed=None if seed is None else seed + i)[0] for i, e in enumerate(self.envs)
        ]
        self._obs = np.stack([np.asarray(o) for o in first])
        self._ended[:] = False
        self._episode += 1
        self._succeeded = False
        self._clip = EpisodeFrames(episode=self._episode) if self._episode in self.wanted else None
        if self._clip is not None:
            self.clips.append(self._clip)
            self._clip.frames.append(_render(self.envs[0]))
            self._clip.success_so_far.append(False)
        return self._obs, {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        assert self._obs is not None
        n = self.num_envs
        next_obs, reward = self._obs.copy(), np.zeros(n)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        success, has_success = np.zeros(n), np.zeros(n, dtype=bool)
        stepped = ~self._ended
        for i in np.flatnonzero(stepped):
            o, r, term, trunc, info = self.envs[i].step(actions[i])
            next_obs[i], reward[i] = np.asarray(o), float(r)
            terminated[i], truncated[i] = bool(term), bool(trunc)
            if "success" in info:
                success[i], has_success[i] = float(info["success"]), True
            if i == 0:
                self._succeeded = self._succeeded or bool(success[0] > 0.5)
                if self._clip is not None:
                    self._clip.frames.append(_render(self.envs[0]))
                    self._clip.success_so_far.append(self._succeeded)
        self._ended |= terminated | truncated
        self._obs = next_obs
        info_out: dict[str, Any] = {"success": success, "_success": has_success}
        if not has_success[stepped].all():
            info_out = {}  # a stepped env reported no success: the loop says what is missing
        return next_obs, reward, terminated, truncated, info_out


def record_trial(
    agent: AdaptiveAgent,
    env: gym.Env[Any, Any],
    task: Any,
    *,
    num_episodes: int,
    record: Sequence[int],
    deterministic: bool,
    seed: int,
    episode_steps: int | None = None,
) -> list[EpisodeFrames]:
    """Run one trial of ``num_episodes`` on ``task`` and keep the frames of episodes ``record``.

    ``env`` is a single env with ``render_mode="rgb_array"``; the agent sees it as a batch of
    one, driven by the one trial loop (:func:`meta_rl.trial.run_trial`). ``record`` holds
    1-based episode indices. ``episode_steps`` (None: the env's own length) ends each episode
    after that many steps.
    """
    wanted = sorted(set(record))
    if not wanted or wanted[0] < 1 or wanted[-1] > num_episodes:
        raise ValueError(f"record: got {list(record)}; allowed: indices in 1..{num_episodes}")
    # An agent that adapts on several parallel rollouts of a task gets them: the filmed env
    # plus unfilmed copies of it on the same task (their observe rows are masked once ended).
    rollouts = int(getattr(agent, "rollouts_per_task", 1))
    envs = [env, *_unfilmed_copies(env, rollouts - 1)]
    try:
        for e in envs:
            find_task_env(e).set_task(task)
        filmed = _FilmedEnvs(envs, wanted)
        run_trial(
            filmed,
            agent,
            episodes=num_episodes,
            deterministic=deterministic,
            seed=seed,
            episode_steps=episode_steps,
        )
    finally:
        for e in envs[1:]:
            e.close()
    return filmed.clips


def _unfilmed_copies(env: gym.Env[Any, Any], count: int) -> list[gym.Env[Any, Any]]:
    """``count`` copies of ``env`` made from its spec, without rendering."""
    if count <= 0:
        return []
    if env.spec is None:
        raise ValueError(
            "env: an agent with several rollouts per task needs an env made by gymnasium.make "
            "(its spec makes the unfilmed copies)"
        )
    kwargs = {**env.spec.kwargs, "render_mode": None}
    return [gym.make(env.spec.id, **kwargs) for _ in range(count)]


def _labelled(clip: EpisodeFrames, num_episodes: int, obj: str, title: str) -> list[np.ndarray]:
    out = []
    for frame, ok in zip(clip.frames, clip.success_so_far, strict=True):
        lines = [
            f"{title}episode {clip.episode}/{num_episodes}   success: {'yes' if ok else 'no'}",
            f"object: {obj}",
        ]
        out.append(label_frame(frame, lines))
    return out


def render_adaptation_video(
    agent: AdaptiveAgent,
    env_id: str,
    task: Any,
    path: str | Path,
    *,
    num_episodes: int,
    env_kwargs: Mapping[str, Any] | None = None,
    deterministic: bool = True,
    seed: int = 0,
    fps: int = 30,
    camera_name: str | None = None,
    size: tuple[int, int] | None = None,
    episode_steps: int | None = None,
    title: str = "",
) -> tuple[Path, list[bool]]:
    """An MP4 of episode 1 (left) and episode K (right) of one trial on ``task``.

    Returns the path and the success of each of the two episodes.
    """
    env = _make_render_env(env_id, env_kwargs or {}, camera_name, size)
    try:
        episodes = [1, num_episodes] if num_episodes > 1 else [1]
        clips = record_trial(
            agent,
            env,
            task,
            num_episodes=num_episodes,
            record=episodes,
            deterministic=deterministic,
            seed=seed,
            episode_steps=episode_steps,
        )
    finally:
        env.close()
    obj = describe_object(task)
    prefix = f"{title} | " if title else ""
    labelled = [_labelled(c, num_episodes, obj, prefix) for c in clips]
    frames = side_by_side(labelled[0], labelled[-1]) if len(labelled) > 1 else labelled[0]
    return write_mp4(frames, path, fps=fps), [c.success for c in clips]


def render_episode_video(
    agent: AdaptiveAgent,
    env_id: str,
    task: Any,
    path: str | Path,
    *,
    episode: int = 1,
    num_episodes: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    deterministic: bool = True,
    seed: int = 0,
    fps: int = 30,
    camera_name: str | None = None,
    size: tuple[int, int] | None = None,
    episode_steps: int | None = None,
    title: str = "",
) -> tuple[Path, bool]:
    """An MP4 of episode ``episode`` of a trial on ``task``; the earlier episodes run unfilmed, so
    the agent has adapted as it would have by then. ``num_episodes`` (K, default ``episode``) only
    labels the frames ``episode k/K``. Returns the path and the episode's success."""
    total = max(num_episodes or episode, episode)
    env = _make_render_env(env_id, env_kwargs or {}, camera_name, size)
    try:
        (clip,) = record_trial(
            agent,
            env,
            task,
            num_episodes=episode,
            record=[episode],
            deterministic=deterministic,
            seed=seed,
            episode_steps=episode_steps,
        )
    finally:
        env.close()
    prefix = f"{title} | " if title else ""
    frames = _labelled(clip, total, describe_object(task), prefix)
    return write_mp4(frames, path, fps=fps), clip.success
