"""The error of a video that yields no clip to score: one base for every expected outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanner.video import VideoInfo


class ClipError(Exception):
    """A video that cannot be turned into a clip; ``status`` is its CSV status.

    Carries what was learnt before it failed: ``info`` (None when the file could not be
    probed), how many frames were sampled, and in how many of them the face was found.
    """

    status = "error"

    def __init__(
        self,
        message: str,
        info: VideoInfo | None = None,
        frames_sampled: int = 0,
        frames_with_face: int = 0,
    ) -> None:
        super().__init__(message)
        self.info = info
        self.frames_sampled = frames_sampled
        self.frames_with_face = frames_with_face


class RayFailure(RuntimeError):
    """A scan's Ray pipeline failed as a whole on the cluster (its scoring actors could not
    load the model, say): the scan stops; the rows it gave are kept."""
