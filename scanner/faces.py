"""Face stage: MTCNN on the sampled frames, face tracks (one per person), square crops.

This module is the one face cropper of the project: training's preprocessing calls
``extract_track`` too, so training and scanning crop identically.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from scanner.contract import Preprocessing
from scanner.errors import ClipError
from scanner.files import cache_root, replacing_folder
from scanner.identity import (
    DESCRIPTOR,
    JOIN,
    POSITION,
    SAME_PERSON,
    FaceEmbedder,
    describable,
    distance,
)
from scanner.video import Frames

log = logging.getLogger(__name__)


class FramesTooSmall(ValueError):
    """MTCNN's image pyramid is empty: the frames are smaller than its 12-pixel window."""


class NoFaceError(ClipError):
    """Too few sampled frames show a face to score the video."""

    status = "no_face"

    def __init__(self, message: str, frames_with_face: int, frames: Frames | None = None) -> None:
        super().__init__(
            message,
            info=frames.info if frames is not None else None,
            frames_sampled=len(frames.indices) if frames is not None else 0,
            frames_with_face=frames_with_face,
        )


@dataclass(frozen=True)
class FrameFaces:
    """MTCNN output for one frame, in full-frame pixel coordinates."""

    boxes: np.ndarray  # (K, 4) float32 x1, y1, x2, y2
    probs: np.ndarray  # (K,) float32
    landmarks: np.ndarray  # (K, 5, 2) float32: eyes, nose, mouth corners


@dataclass(frozen=True)
class FaceTrack:
    """One face through the sampled frames, cropped for the model."""

    indices: tuple[int, ...]  # frame indices of the crops
    crops: np.ndarray  # (T, S, S, 3) uint8 RGB
    boxes: np.ndarray  # (T, 4) float32 detector box per frame (filled from a neighbour if missed)
    detected: np.ndarray  # (T,) bool: the face was detected in this frame
    landmarks: np.ndarray  # (T, 5, 2) float32 in crop pixels (neighbour's where missed)
    # (T,) bool: the frame lies in the shot the face was tracked in. False frames (another shot
    # after a cut) only hold the crop region of the nearest in-shot frame, not this face.
    in_shot: np.ndarray
    shot_count: int = 1  # shots the sampled frames span
    # Other faces tracked in as many sampled frames as a face needs to be scored, left out of
    # the faces tracked with this one (beyond max_people; all of them for the dominant face).
    other_faces: int = 0
    identity: str = POSITION  # how tracks were kept one person each (scanner.identity)

    @property
    def frames_with_face(self) -> int:
        return int(self.detected.sum())


_EMPTY = FrameFaces(
    boxes=np.zeros((0, 4), np.float32),
    probs=np.zeros((0,), np.float32),
    landmarks=np.zeros((0, 5, 2), np.float32),
)


def _area_windows(sizes: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each of ``out`` windows over ``sizes`` (K,) pixels: torch's
    adaptive average pooling, which is ``interpolate(mode="area")``. (K, out) each."""
    i = np.arange(out)
    n = sizes[:, None]
    return (i * n) // out, -((-(i + 1) * n) // out)


def summed_area(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H + 1, W + 1) summed-area table of each channel: [c, y, x] sums
    image[:y, :x, c]. Channels first, so that ``area_crops`` and ``area_resize`` gather whole
    values from one plane (on the shared clips twice as fast as 3-value pixels)."""
    h, w = image.shape[:2]
    if 255 * h * w < 2**31:
        table = np.empty((3, h + 1, w + 1), np.int32)
        for c in range(3):  # OpenCV's int32 sums, 3x faster than numpy's; written in place
            cv2.integral(np.ascontiguousarray(image[..., c]), sum=table[c])
        return table
    table = np.zeros((3, h + 1, w + 1), np.int64)
    np.cumsum(image.transpose(2, 0, 1), axis=1, dtype=table.dtype, out=table[:, 1:, 1:])
    np.cumsum(table[:, 1:, 1:], axis=2, out=table[:, 1:, 1:])
    return table


def area_crops(
    table: np.ndarray,
    y0: np.ndarray,
    y1: np.ndarray,
    x0: np.ndarray,
    x1: np.ndarray,
    size: int | tuple[int, int],
) -> np.ndarray:
    """Rows y0..y1 and columns x0..x1 (exclusive ends, (K,) each) of an image given by its
    ``summed_area`` table, each resized to ``size`` (side, or (height, width)) by area
    averaging -> (K, 3, height, width) float32.

    The same numbers as torch's ``interpolate(crop, mode="area")`` on the float image, which
    facenet-pytorch's MTCNN calls for each level of its image pyramid and once per candidate
    box (most of its time on large faces): window sums of whole numbers are exact, and they
    are divided as torch divides (by the window's height, then its width).
    """
    oh, ow = (size, size) if isinstance(size, int) else size
    rs, re = _area_windows(y1 - y0, oh)
    cs, ce = _area_windows(x1 - x0, ow)
    width = table.shape[2]
    r0, r1 = ((y0[:, None] + rs) * width)[:, :, None], ((y0[:, None] + re) * width)[:, :, None]
    c0, c1 = (x0[:, None] + cs)[:, None, :], (x0[:, None] + ce)[:, None, :]  # (K, 1, ow)
    i11, i01, i10, i00 = r1 + c1, r0 + c1, r1 + c0, r0 + c0  # (K, oh, ow) indices in a plane
    kh = (re - rs).astype(np.float32)[:, :, None]
    kw = (ce - cs).astype(np.float32)[:, None, :]
    out = np.empty((len(y0), 3, oh, ow), np.float32)
    for c, plane in enumerate(table.reshape(3, -1)):
        sums = plane.take(i11) - plane.take(i01) - plane.take(i10) + plane.take(i00)
        out[:, c] = sums.astype(np.float32) / kh / kw
    return out


def area_resize(table: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The whole image of a ``summed_area`` table area-resized to size (height, width) ->
    (3, height, width) float32: ``area_crops`` of the whole image, from whole rows of the
    table and then columns (the same sums, without a gather per pixel)."""
    oh, ow = size
    rs, re = (a[0] for a in _area_windows(np.array([table.shape[1] - 1]), oh))
    cs, ce = (a[0] for a in _area_windows(np.array([table.shape[2] - 1]), ow))
    rows = table.take(re, axis=1) - table.take(rs, axis=1)  # (3, oh, W + 1): row windows
    out = (rows.take(ce, axis=2) - rows.take(cs, axis=2)).astype(np.float32)
    out /= (re - rs).astype(np.float32)[:, None]
    out /= (ce - cs).astype(np.float32)
    return out


def _scaled(x: np.ndarray) -> torch.Tensor:
    """MTCNN's input scaling of pixel values, [0, 255] -> [-1, 1], done in place in the float32
    array ``x``: the same float32 subtraction and (exact) multiplication as torch's."""
    x -= 127.5
    x *= 0.0078125
    return torch.from_numpy(x)


def _stage_crops(
    tables: list[np.ndarray],
    hw: tuple[int, int],
    boxes: torch.Tensor,
    image_inds: torch.Tensor,
    size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MTCNN's input for its next stage: each box's part inside its frame (facenet-pytorch's
    ``pad``), area-resized to size x size and scaled -> (K', 3, S, S) and the (K,) mask of
    the boxes with a part inside the frame (K' of them)."""
    from facenet_pytorch.models.utils.detect_face import pad

    y, ey, x, ex = pad(boxes, hw[1], hw[0])
    keep = (ey > y - 1) & (ex > x - 1)
    inds = image_inds.numpy()
    out = np.empty((len(y), 3, size, size), np.float32)
    for n in np.unique(inds[keep]):
        sel = np.flatnonzero(keep & (inds == n))
        out[sel] = area_crops(tables[n], y[sel] - 1, ey[sel], x[sel] - 1, ex[sel], size)
    return _scaled(out[keep]), torch.from_numpy(keep)


# MTCNN's networks as OnnxNets exports them: attribute of facenet-pytorch's MTCNN, side of the
# example input, dynamic axes of the input "x". With the opset and torch's and facenet-pytorch's
# versions, they are part of the cache key of the exported graphs.
MTCNN_NETS = (
    ("pnet", 24, {0: "n", 2: "h", 3: "w"}),
    ("rnet", 24, {0: "n"}),
    ("onet", 48, {0: "n"}),
)
MTCNN_OPSET = 17


def _export_net(net: torch.nn.Module, side: int, axes: dict[int, str]) -> bytes:
    """One of MTCNN's networks as an ONNX graph (torch's TorchScript exporter), in memory."""
    import io

    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.cpu().eval(),
            (torch.zeros(2, 3, side, side),),
            f,
            input_names=["x"],
            dynamic_axes={"x": axes},
            opset_version=MTCNN_OPSET,
            dynamo=False,
        )
    return f.getvalue()


def _mtcnn_key(mtcnn: torch.nn.Module) -> str:
    """sha256 of what the exported graphs depend on: the three networks' weights, the export
    settings, and torch's (the exporter) and facenet-pytorch's (the modules) versions."""
    from importlib.metadata import version

    h = hashlib.sha256()
    settings = (torch.__version__, version("facenet-pytorch"), MTCNN_OPSET, MTCNN_NETS)
    h.update(repr(settings).encode())
    for name, _, _ in MTCNN_NETS:
        for key, tensor in getattr(mtcnn, name).state_dict().items():
            h.update(key.encode())
            h.update(tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def mtcnn_graphs(mtcnn: torch.nn.Module) -> list[bytes]:
    """The ONNX graphs of MTCNN's networks (``MTCNN_NETS`` order), read from the user's cache
    (``cache_root()/onnx/mtcnn-<_mtcnn_key>/``) or exported and written there.

    Exporting costs a fresh process about 0.25 CPU-s (0.1 s in a scan worker), reading them
    about 5 ms; every scan worker needs them. The folder is filled under a temporary name and
    then renamed, so a reader never sees part of it and workers exporting at once end with one
    copy. Where the cache cannot be read or written the graphs are exported in memory.
    """
    folder = cache_root() / "onnx" / f"mtcnn-{_mtcnn_key(mtcnn)}"
    paths = [folder / f"{name}.onnx" for name, _, _ in MTCNN_NETS]
    try:
        if all(p.is_file() for p in paths):
            return [p.read_bytes() for p in paths]
    except OSError as e:
        log.debug("cannot read MTCNN's cached ONNX graphs in %s: %s", folder, e)
    graphs = [_export_net(getattr(mtcnn, name), side, axes) for name, side, axes in MTCNN_NETS]
    try:
        with replacing_folder(folder, lambda: all(p.is_file() for p in paths)) as scratch:
            for path, graph in zip(paths, graphs):
                (scratch / path.name).write_bytes(graph)
    except OSError as e:
        log.debug("cannot cache MTCNN's ONNX graphs in %s: %s", folder, e)
    return graphs


class OnnxNets:
    """MTCNN's three networks (facenet-pytorch's weights) as ONNX graphs (``mtcnn_graphs``: from
    the user's cache after the first export) run by onnxruntime on the CPU: about twice as fast
    there as PyTorch. Each call takes and returns torch tensors like the modules. One thread
    per session: scan workers run in parallel, and may share one instance (onnxruntime's
    sessions run concurrently); ``shared`` is that instance, made once per process (torch's
    exporter is not thread-safe)."""

    _lock = threading.Lock()
    _shared: OnnxNets | None = None

    @classmethod
    def shared(cls, mtcnn: torch.nn.Module) -> OnnxNets:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls(mtcnn)
            return cls._shared

    def __init__(self, mtcnn: torch.nn.Module) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.sessions = [
            ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            for graph in mtcnn_graphs(mtcnn)
        ]

    def _run(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = np.ascontiguousarray(x.numpy())
        return tuple(torch.from_numpy(y) for y in self.sessions[k].run(None, {"x": x}))

    def pnet(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._run(0, x)

    def rnet(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._run(1, x)

    def onet(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._run(2, x)


def _on_module_device(net: torch.nn.Module):
    """``net`` called on CPU tensors: inputs go to its device, outputs come back to the CPU
    (the pyramid and the boxes are built on the CPU; the modules may sit on a GPU)."""
    device = next(net.parameters()).device
    if device.type == "cpu":
        return net

    def call(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.float().cpu() for t in net(x.to(device, non_blocking=True)))

    return call


def pyramid_scales(mtcnn: torch.nn.Module, hw: tuple[int, int]) -> list[float]:
    """MTCNN's image pyramid for frames of ``hw`` pixels: the scale of each level, finest
    first (the first level shows a face of ``min_face_size`` pixels at PNet's 12)."""
    m = mtcnn
    scale, side = 12.0 / m.min_face_size, min(hw) * 12.0 / m.min_face_size
    scales = []
    while side >= 12:
        scales.append(scale)
        scale, side = scale * m.factor, side * m.factor
    return scales


def mtcnn_detect(
    mtcnn: torch.nn.Module, images: np.ndarray, nets: OnnxNets | None = None, skip: int = 0
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """facenet-pytorch's ``MTCNN.detect(images, landmarks=True)`` on (N, H, W, 3) uint8 RGB
    frames: per frame (boxes (K, 4), probs (K,), landmarks (K, 5, 2)), largest box first, or
    None without a face. ``skip`` > 0 leaves out the pyramid's ``skip`` finest levels (the
    coarse pass of ``FaceDetector``: faces under about ``min_face_size / factor ** skip``
    pixels are missed, at a fraction of the cost; the other levels are the same).

    Its ``detect_face`` step by step, with its thresholds, pyramid and NMS, except that the
    pyramid levels and the candidate boxes for the refinement networks are resized by
    ``area_crops`` from one summed-area table per frame (the same numbers, without one torch
    call per box), a box wholly outside its frame is dropped (facenet-pytorch would misalign
    the boxes after it), and ``nets`` (``OnnxNets``), if given, run the networks instead of
    the modules (within 1e-5 of them).
    """
    from facenet_pytorch.models.utils.detect_face import (
        batched_nms_numpy,
        bbreg,
        fixed_batch_process,
        generateBoundingBox,
        rerec,
    )
    from torchvision.ops.boxes import batched_nms

    m = mtcnn
    if nets:
        pnet, rnet, onet = nets.pnet, nets.rnet, nets.onet
    else:
        pnet, rnet, onet = (_on_module_device(net) for net in (m.pnet, m.rnet, m.onet))
    n, h, w = images.shape[:3]
    tables = [summed_area(image) for image in images]
    scales = pyramid_scales(m, (h, w))[skip:]
    if not scales:
        raise FramesTooSmall(f"{w}x{h} frames are smaller than MTCNN's 12-pixel window")
    # Stage 1: PNet over the image pyramid, NMS per scale and image, then per image.
    found, found_inds, picks, offset = [], [], [], 0
    for s in scales:
        size = (int(h * s + 1), int(w * s + 1))
        level = _scaled(np.stack([area_resize(t, size) for t in tables]))
        if not nets:  # channels last as facenet-pytorch's pyramid: PyTorch's PNet sums alike
            level = level.contiguous(memory_format=torch.channels_last)
        reg, probs = pnet(level)
        boxes_s, inds_s = generateBoundingBox(reg, probs[:, 1], s, m.thresholds[0])
        found.append(boxes_s)
        found_inds.append(inds_s)
        picks.append(batched_nms(boxes_s[:, :4], boxes_s[:, 4], inds_s, 0.5) + offset)
        offset += boxes_s.shape[0]
    pick = torch.cat(picks)
    boxes, image_inds = torch.cat(found)[pick], torch.cat(found_inds)[pick]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]
    regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack(
        [
            boxes[:, 0] + boxes[:, 5] * regw,
            boxes[:, 1] + boxes[:, 6] * regh,
            boxes[:, 2] + boxes[:, 7] * regw,
            boxes[:, 3] + boxes[:, 8] * regh,
            boxes[:, 4],
        ]
    ).permute(1, 0)
    boxes = rerec(boxes)
    # Stage 2: RNet on 24x24 crops.
    if len(boxes) > 0:
        crops, keep = _stage_crops(tables, (h, w), boxes, image_inds, 24)
        boxes, image_inds = boxes[keep], image_inds[keep]
        reg, probs = fixed_batch_process(crops, rnet)
        score = probs[:, 1]
        ipass = score > m.thresholds[1]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds, reg = image_inds[ipass], reg[ipass]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, reg = boxes[pick], image_inds[pick], reg[pick]
        boxes = rerec(bbreg(boxes, reg))
    # Stage 3: ONet on 48x48 crops: boxes, scores and landmarks; NMS by the smaller box.
    points = torch.zeros(0, 5, 2)
    if len(boxes) > 0:
        crops, keep = _stage_crops(tables, (h, w), boxes, image_inds, 48)
        boxes, image_inds = boxes[keep], image_inds[keep]
        reg, marks, probs = fixed_batch_process(crops, onet)
        score = probs[:, 1]
        ipass = score > m.thresholds[2]
        marks = marks.permute(1, 0)[:, ipass]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds, reg = image_inds[ipass], reg[ipass]
        w_i = boxes[:, 2] - boxes[:, 0] + 1
        h_i = boxes[:, 3] - boxes[:, 1] + 1
        points_x = w_i.repeat(5, 1) * marks[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = h_i.repeat(5, 1) * marks[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        points = torch.stack((points_x, points_y)).permute(2, 1, 0)
        boxes = bbreg(boxes, reg)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]
    boxes_np, points_np, inds_np = boxes.numpy(), points.numpy(), image_inds.numpy()
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
    for i in range(n):
        sel = np.flatnonzero(inds_np == i)
        if len(sel) == 0:
            out.append(None)
            continue
        b = boxes_np[sel]
        order = np.argsort((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[::-1]  # largest first
        out.append((b[order, :4], b[order, 4], points_np[sel][order]))
    return out


# The coarse pass of FaceDetector leaves out this many of MTCNN's finest pyramid levels: the
# smallest face it looks for is min_face_size / factor ** 2 (about 40 px of the detection
# image instead of 20), for 45 % of the detection time on the 29 shared clips' sampled frames.
COARSE_SKIP = 2
# A frame whose coarse pass finds no confident face, or a confident face smaller than this
# many times the coarse pass's smallest face, is run again through the whole pyramid. On the
# 29 shared clips every confident box the coarse pass found 36 px or more across (detection
# pixels) equalled the whole pyramid's to 1e-3 px; all smaller ones differed or were missed.
SMALL_FACE = 2.0


class FaceDetector:
    """facenet-pytorch's MTCNN run on downscaled copies of the frames, boxes mapped back.

    One instance per thread: it holds a module and is cheap to build (weights ship in the
    facenet-pytorch wheel). ``mtcnn_detect`` runs it; on the CPU its networks run through
    onnxruntime (``OnnxNets``) where it is installed (``onnx=False``: PyTorch).

    ``coarse`` (default): the first frame of each call goes through the whole image pyramid
    (MTCNN.detect's); if it shows a confident face smaller than ``small_face`` (SMALL_FACE
    times the coarse pass's smallest face), so do all the frames. Otherwise the other frames
    go through a coarse pass without the pyramid's COARSE_SKIP finest levels, and a frame is
    run through the whole pyramid again where that finds no confident face or a confident
    face smaller than ``small_face``: smaller faces could have been missed next to it. Faces
    large enough are found alike by both passes (boxes within 1e-3 px on the shared clips);
    ``coarse=False`` runs every frame through the whole pyramid.
    """

    def __init__(
        self,
        contract: Preprocessing,
        device: torch.device | str = "cpu",
        onnx: bool = True,
        coarse: bool = True,
    ) -> None:
        from facenet_pytorch import MTCNN

        self.contract = contract
        self.mtcnn = MTCNN(keep_all=True, device=torch.device(device))
        self.nets = None
        if onnx and torch.device(device).type == "cpu" and importlib.util.find_spec("onnxruntime"):
            self.nets = OnnxNets.shared(self.mtcnn)
        self.coarse = coarse
        self.small_face = SMALL_FACE * self.mtcnn.min_face_size / self.mtcnn.factor**COARSE_SKIP
        self.frames_full = 0  # frames run through the whole pyramid (detection pixels)
        self.frames_coarse = 0  # frames whose coarse pass was kept

    def _needs_full(self, found: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> bool:
        """Whether one frame's coarse result may have missed a face: it shows no confident
        face, or a confident face smaller than ``small_face``."""
        if found is None:
            return True
        boxes = found[0][found[1] >= self.contract.min_face_prob]
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        return len(sides) == 0 or bool(sides.min() < self.small_face)

    def _find(self, small: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        """MTCNN on (N, h, w, 3) detection-size frames: the coarse pass where it is enough."""
        m, nets, n = self.mtcnn, self.nets, len(small)
        levels = len(pyramid_scales(m, small.shape[1:3]))
        if not self.coarse or n < 2 or levels <= COARSE_SKIP:
            self.frames_full += n
            return mtcnn_detect(m, small, nets)
        found = mtcnn_detect(m, small[:1], nets)
        self.frames_full += 1
        small_first = found[0] is not None and self._needs_full(found[0])
        if small_first:  # small faces in this video: all of it through the whole pyramid
            self.frames_full += n - 1
            return found + mtcnn_detect(m, small[1:], nets)
        found += mtcnn_detect(m, small[1:], nets, skip=COARSE_SKIP)
        again = [i for i in range(1, n) if self._needs_full(found[i])]
        if again:
            for i, f in zip(again, mtcnn_detect(m, small[again], nets)):
                found[i] = f
        self.frames_full += len(again)
        self.frames_coarse += n - 1 - len(again)
        return found

    def detect(self, images: np.ndarray) -> list[FrameFaces]:
        """images: (T, H, W, 3) uint8 RGB -> one FrameFaces per frame."""
        h, w = images.shape[1:3]
        scale = min(1.0, self.contract.detect_max_side / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = np.stack([cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images])
        else:
            small = np.ascontiguousarray(images)
        try:
            with torch.inference_mode():
                found = self._find(small)
        except FramesTooSmall as e:
            log.debug("MTCNN failed on %dx%d frames: %s", w, h, e)
            return [_EMPTY] * len(images)
        return [
            _EMPTY
            if f is None
            else FrameFaces(
                boxes=np.asarray(f[0], np.float32) / scale,
                probs=np.asarray(f[1], np.float32),
                landmarks=np.asarray(f[2], np.float32) / scale,
            )
            for f in found
        ]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box a (4,) against boxes b (K, 4)."""
    x1 = np.maximum(a[0], b[:, 0])
    y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[2], b[:, 2])
    y2 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-6)


def _link_cost(prev: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Cost of continuing a track whose last box is ``prev`` with each of ``boxes`` (K,).

    Sampled frames can be seconds apart, so a face may have moved: a box continues the track
    when it overlaps it (cost 1 - IoU < 0.8), or failing that when its centre lies within one
    face width of the previous centre at a similar size (cost 1 + distance / width). inf: no.
    """
    iou = _iou(prev, boxes)
    size = max(prev[2] - prev[0], prev[3] - prev[1])
    dist = np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - (prev[:2] + prev[2:]) / 2, axis=1)
    sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    near = (dist < size) & (sizes > 0.5 * size) & (sizes < 2.0 * size)
    return np.where(iou >= 0.2, 1.0 - iou, np.where(near, 1.0 + dist / size, np.inf))


def shot_ids(images: np.ndarray, max_distance: float) -> np.ndarray:
    """(T,) shot number of each sampled frame: a new shot wherever consecutive frames' colour
    histograms (HSV 16x4x4 on a 96x54 thumbnail) are further apart than ``max_distance``
    (Bhattacharyya distance). On the shared clips, consecutive random samples of one shot
    measured at most 0.29, the three cuts sampled in hamilton_stage 0.41 to 0.61."""
    hists = []
    for image in images:
        small = cv2.resize(image, (96, 54), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        h = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256])
        hists.append(cv2.normalize(h, h).flatten())
    cuts = [
        cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA) > max_distance
        for a, b in zip(hists, hists[1:])
    ]
    return np.concatenate([[0], np.cumsum(cuts)]).astype(np.int64)


@dataclass(frozen=True)
class _Selected:
    boxes: np.ndarray  # (T, 4)
    landmarks: np.ndarray  # (T, 5, 2)
    detected: np.ndarray  # (T,) bool
    in_shot: np.ndarray  # (T,) bool
    other_faces: int = 0  # tracks found in at least min_frames frames and not selected


# A track: frame -> index of its box among that frame's boxes.
Track = dict[int, int]
# descriptors[t][k]: identity descriptor of box k of frame t (None or missing: none for it).
Descriptors = list[dict[int, "np.ndarray | None"]]


def _mean_descriptor(track: Track, descriptors: Descriptors) -> np.ndarray | None:
    found = [descriptors[t].get(k) for t, k in track.items()]
    found = [d for d in found if d is not None]
    return np.mean(found, axis=0) if found else None


def link_tracks(
    faces: list[FrameFaces],
    min_prob: float,
    shots: np.ndarray | None = None,
    descriptors: Descriptors | None = None,
) -> list[Track]:
    """Link confident boxes frame by frame into face tracks, in order of first appearance.

    Greedy lowest-cost assignment of each frame's boxes against each track's last box
    (``_link_cost``: overlap, else a centre within one face width at a similar size), so a
    face may be missed in some frames; never across a change of ``shots`` (T,) (default: one
    shot): after a cut, a box in the same place is usually someone else. With ``descriptors``
    (``scanner.identity``) a box whose descriptor lies further than SAME_PERSON from its
    track's mean does not continue it, and afterwards two tracks of one shot that share no
    frame and whose mean descriptors lie closer than JOIN are one face (it moved further
    between two sampled frames than position allows).
    """
    shots = np.zeros(len(faces), np.int64) if shots is None else np.asarray(shots)
    tracks: list[Track] = []
    last: list[np.ndarray] = []
    last_shot: list[int] = []
    cached: dict[int, tuple[int, np.ndarray | None]] = {}  # track -> (its length, mean)

    def means(i: int) -> np.ndarray | None:
        """Track i's mean descriptor; a track only grows, so its length says it is current."""
        if i not in cached or cached[i][0] != len(tracks[i]):
            cached[i] = (len(tracks[i]), _mean_descriptor(tracks[i], descriptors))
        return cached[i][1]

    for t, f in enumerate(faces):
        cand = np.flatnonzero(f.probs >= min_prob)
        if len(cand) == 0:
            continue
        boxes = f.boxes[cand]
        cost = np.full((len(last), len(cand)), np.inf)
        for i, (prev, shot) in enumerate(zip(last, last_shot)):
            if shot == shots[t]:
                cost[i] = _link_cost(prev, boxes)
                if descriptors is not None:
                    mean = means(i)
                    for j, k in enumerate(cand):
                        d = distance(mean, descriptors[t].get(int(k)))
                        if d is not None and d > SAME_PERSON:
                            cost[i, j] = np.inf
        used_tracks: set[int] = set()
        used_boxes: set[int] = set()
        for flat in np.argsort(cost, axis=None):
            i, j = divmod(int(flat), len(cand))
            if not np.isfinite(cost[i, j]):
                break
            if i in used_tracks or j in used_boxes:
                continue
            tracks[i][t] = int(cand[j])
            last[i] = boxes[j]
            used_tracks.add(i)
            used_boxes.add(j)
        for j in range(len(cand)):
            if j not in used_boxes:
                tracks.append({t: int(cand[j])})
                last.append(boxes[j])
                last_shot.append(int(shots[t]))
    if descriptors is None:
        return tracks
    return _join_tracks(tracks, shots, descriptors, [means(i) for i in range(len(tracks))])


def _join_tracks(
    tracks: list[Track],
    shots: np.ndarray,
    descriptors: Descriptors,
    means: list[np.ndarray | None],
) -> list[Track]:
    """Join the closest pair of disjoint tracks of one shot (by their mean descriptors
    ``means``), while one lies closer than JOIN; ties go to the first pair in track order.
    Each join updates only the joined track's distances, so a crowd costs each pair's
    distance about once."""
    n = len(tracks)
    alive: list[Track | None] = list(tracks)

    def gap(a: int, b: int) -> float:
        ta, tb = alive[a], alive[b]
        if ta is None or tb is None or set(ta) & set(tb) or shots[min(ta)] != shots[min(tb)]:
            return np.inf
        d = distance(means[a], means[b])
        return d if d is not None and d < JOIN else np.inf  # a NaN is no match either

    dist = np.full((n, n), np.inf)
    for a in range(n):
        for b in range(a + 1, n):
            dist[a, b] = gap(a, b)
    while n > 1:
        a, b = divmod(int(np.argmin(dist)), n)
        if not np.isfinite(dist[a, b]):
            break
        joined = dict(sorted({**alive[a], **alive[b]}.items()))
        alive[a], alive[b] = joined, None
        means[a] = _mean_descriptor(joined, descriptors)
        dist[b, :] = dist[:, b] = np.inf
        for c in range(n):
            if c != a:
                dist[min(a, c), max(a, c)] = gap(min(a, c), max(a, c))
    return [t for t in alive if t is not None]


def describe_tracks(
    images: np.ndarray, faces: list[FrameFaces], tracks: list[Track], embedder: FaceEmbedder
) -> Descriptors:
    """Identity descriptors (``embedder``) of the boxes that tell whether each position track
    (``link_tracks`` without descriptors) is one person, for ``link_tracks`` to link again:
    the first and the last of its boxes large enough for one (``scanner.identity.describable``),
    and where those two are different people (further apart than SAME_PERSON), every box of
    it. A track whose ends are one person is taken to be one person throughout: its other
    boxes get no descriptor and follow it by position.

    On the 29 shared clips, describing every confident box took 171 descriptors, these 56,
    with the same face tracks in each video (a descriptor: 7-12 ms on a 2-core CPU, 74 ms
    through dlib-bin's own network).
    """
    descriptors: Descriptors = [{} for _ in faces]

    def describe(boxes: list[tuple[int, int]]) -> list[np.ndarray | None]:
        for t, k in boxes:
            if k not in descriptors[t]:
                descriptors[t][k] = embedder(images[t], faces[t].boxes[k : k + 1])[0]
        return [descriptors[t][k] for t, k in boxes]

    for track in tracks:
        large = [(t, k) for t, k in sorted(track.items()) if describable(faces[t].boxes[k])[0]]
        if not large:
            continue
        d = distance(*describe([large[0], large[-1]]))
        if d is not None and d > SAME_PERSON:
            describe(large[1:-1])
    return descriptors


def _presence(track: Track, faces: list[FrameFaces]) -> float:
    """Sum of the track's box sides: present often and large."""
    b = np.stack([faces[t].boxes[k] for t, k in track.items()])
    return float(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).sum())


def _fill(track: Track, faces: list[FrameFaces], shots: np.ndarray, others: int) -> _Selected:
    """A track's box and landmarks in every frame: frames where it was not found take those of
    the nearest frame where it was (always in the track's own shot: tracks never cross a cut)."""
    n = len(faces)
    found = np.array(sorted(track))
    detected = np.zeros(n, bool)
    detected[found] = True
    boxes = np.zeros((n, 4), np.float32)
    landmarks = np.zeros((n, 5, 2), np.float32)
    for t in range(n):
        src = t if detected[t] else int(found[np.abs(found - t).argmin()])
        boxes[t] = faces[src].boxes[track[src]]
        landmarks[t] = faces[src].landmarks[track[src]]
    return _Selected(boxes, landmarks, detected, shots == shots[found[0]], others)


def select_people(
    faces: list[FrameFaces],
    min_prob: float,
    shots: np.ndarray | None = None,
    min_frames: int = 1,
    max_people: int = 1,
    descriptors: Descriptors | None = None,
) -> list[_Selected]:
    """The faces of the sampled frames worth a score, largest first (at most ``max_people``).

    The first is the dominant face: the track with the largest sum of box sides (present
    often and large) among those found in at least ``min_frames`` frames, if any track is,
    else the largest track (it will fail the contract's face rule). The others are the
    further tracks found in at least ``min_frames`` frames, by the same size. Each counts in
    ``other_faces`` the tracks found in at least ``min_frames`` frames and left out. Empty
    without a confident face. Tracks come from ``link_tracks``.
    """
    n = len(faces)
    shots = np.zeros(n, np.int64) if shots is None else np.asarray(shots)
    tracks = link_tracks(faces, min_prob, shots, descriptors)
    if not tracks:
        return []
    size = [_presence(track, faces) for track in tracks]
    # max() and sorted() keep the first of equals: the earliest track wins a tie.
    best = max(range(len(tracks)), key=lambda i: (len(tracks[i]) >= min_frames, size[i]))
    order = sorted(range(len(tracks)), key=lambda i: size[i], reverse=True)
    chosen = [best] + [i for i in order if i != best and len(tracks[i]) >= min_frames]
    chosen = chosen[: max(1, max_people)]
    qualified = sum(len(track) >= min_frames for track in tracks)
    others = qualified - sum(len(tracks[i]) >= min_frames for i in chosen)
    return [_fill(tracks[i], faces, shots, others) for i in chosen]


def select_track(
    faces: list[FrameFaces], min_prob: float, shots: np.ndarray | None = None, min_frames: int = 1
) -> _Selected | None:
    """The dominant face of ``select_people`` (None without a confident face); its
    ``other_faces`` counts the other tracks found in at least ``min_frames`` frames."""
    people = select_people(faces, min_prob, shots, min_frames)
    return people[0] if people else None


def square_region(box: np.ndarray, margin: float) -> tuple[int, int, int]:
    """The square a face crop covers, in frame pixels: (x0, y0, side).

    side = max(box width, box height) * (1 + margin), centred on the box.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return round(cx - side / 2), round(cy - side / 2), max(1, round(side))


def square_inside(x0: int, y0: int, side: int, width: int, height: int) -> tuple[int, ...]:
    """The part of the square of ``side`` pixels at (x0, y0) inside a width x height frame:
    (x0, y0, x1, y1), exclusive ends; empty (x1 <= x0 or y1 <= y0) where none is."""
    return max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)


# From this many times the crop's side on, a face's square is area-averaged through a
# summed-area table (``area_square``) instead of OpenCV's INTER_AREA: measured break-even at
# about 4.5 (1000 px for 224 px crops, 3.6 ms each), less than half the time at 1900 px.
AREA_TABLE_FROM = 5
# The most pixels whose 8-bit sums fit in int32.
INT32_TABLE_PIXELS = (2**31 - 1) // 255


def area_square(image: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """The square of ``side`` pixels at (x0, y0) of ``image`` (H, W, 3) uint8, parts outside
    the frame black, reduced to (size, size, 3) uint8 by area averaging (side > size): each
    pixel the mean of the side/size-wide square of the frame it covers, pixels cut by its
    edges weighted by the share inside, as OpenCV's INTER_AREA computes (within one grey level:
    the same mean, rounded from float64 instead of float32).

    The sums come from a summed-area table of the part inside the frame, read at the squares'
    fractional corners by bilinear interpolation, which is exact: the integral of an image
    constant over each pixel is bilinear within each pixel. Its cost grows with the part of
    the frame inside the square, INTER_AREA's with the whole square, black padding included,
    and faster: from about 4.5 x size on (``crop_square`` uses it from AREA_TABLE_FROM x size:
    the 1500-2200 px squares of a face that fills a 1080p frame in less than half the time).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"an (H, W, 3) uint8 image is needed, got {image.shape} {image.dtype}")
    sx0, sy0, sx1, sy1 = square_inside(x0, y0, side, image.shape[1], image.shape[0])
    if sx1 <= sx0 or sy1 <= sy0:
        return np.zeros((size, size, 3), np.uint8)
    part = image[sy0:sy1, sx0:sx1]
    rows, cols = part.shape[:2]
    # (rows + 1, cols + 1, 3), channels interleaved: int32 where its sums fit (4K frames do),
    # else float64 (exact to 2**53; slower, but far faster than numpy's cumulative sums)
    depth = cv2.CV_32S if rows * cols <= INT32_TABLE_PIXELS else cv2.CV_64F
    table = cv2.integral(part, sdepth=depth)
    edges = np.arange(size + 1) * (side / size)  # the squares' edges, from the square's corner
    ey = np.clip(edges + (y0 - sy0), 0, rows)  # outside the frame the sums stay flat
    ex = np.clip(edges + (x0 - sx0), 0, cols)
    yi = np.minimum(ey.astype(np.int64), rows - 1)
    xi = np.minimum(ex.astype(np.int64), cols - 1)
    # Rows of (size + 1) corners x 3 channels, so that numpy's inner loops run along a row.
    fy, fx = (ey - yi)[:, None], np.repeat(ex - xi, 3)[None, :]
    at = (yi[:, None] * (cols + 1) + xi[None, :]).ravel()  # the corners' cells
    flat = table.reshape(-1, 3)
    n = size + 1

    def corners(offset: int) -> np.ndarray:
        return flat.take(at + offset, axis=0).reshape(n, 3 * n).astype(np.float64)

    t00, t01, t10, t11 = corners(0), corners(1), corners(cols + 1), corners(cols + 2)
    s = t00 + (t01 - t00) * fx + ((t10 - t00) + (t11 - t10 - t01 + t00) * fx) * fy
    sums = (s[1:, 3:] - s[:-1, 3:] - s[1:, :-3] + s[:-1, :-3]).reshape(size, size, 3)
    return np.rint(sums * (size * size) / (side * side)).clip(0, 255).astype(np.uint8)


def crop_square(
    image: np.ndarray, box: np.ndarray, margin: float, size: int
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Crop a square around ``box`` dilated by ``margin`` and resize it to size x size.

    The square's side is max(box width, box height) * (1 + margin), centred on the box, so the
    face keeps its aspect ratio. Parts of the square outside the frame are black. A larger
    square is area-averaged (OpenCV's INTER_AREA; ``area_square``, the same within one grey
    level, from AREA_TABLE_FROM x size on, where it is faster), a smaller one enlarged
    bilinearly. Returns the crop (size, size, 3) and the (x0, y0, scale) that maps frame pixels
    p to crop pixels (p - (x0, y0)) * scale.
    """
    x0, y0, s = square_region(box, margin)
    if s >= AREA_TABLE_FROM * size:
        return area_square(image, x0, y0, s, size), (float(x0), float(y0), size / s)
    canvas = np.zeros((s, s, 3), np.uint8)
    sx0, sy0, sx1, sy1 = square_inside(x0, y0, s, image.shape[1], image.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    crop = cv2.resize(canvas, (size, size), interpolation=interp)
    return crop, (float(x0), float(y0), size / s)


def track_people(
    frames: Frames,
    faces: list[FrameFaces],
    contract: Preprocessing,
    max_people: int = 1,
    require: bool = True,
    embedder: FaceEmbedder | None = None,
) -> list[FaceTrack]:
    """Follow and crop the faces worth a score (``select_people``), largest first; the first
    is the dominant face.

    Tracks are linked by position and size; with an ``embedder`` (``scanner.identity``) and
    more than one track, they are linked again with the identity descriptors of the faces
    that tell whether each track is one person (``describe_tracks``). Raises
    NoFaceError without any confident face, and (``require``) when the dominant face was found
    in fewer sampled frames than the contract asks (``require_face``).
    """
    c = contract
    shots = shot_ids(frames.images, c.shot_cut) if c.shot_cut < 1.0 else np.zeros(len(faces), int)
    min_frames = c.min_face_frames(len(faces))
    identity = POSITION
    people = select_people(faces, c.min_face_prob, shots, min_frames, max_people)
    if embedder is not None and len(by_position := link_tracks(faces, c.min_face_prob, shots)) > 1:
        descriptors = describe_tracks(frames.images, faces, by_position, embedder)
        people = select_people(faces, c.min_face_prob, shots, min_frames, max_people, descriptors)
        identity = DESCRIPTOR
    if not people:
        raise NoFaceError("no face found in any sampled frame", 0, frames)
    tracks = []
    for person in people:
        boxes, landmarks = person.boxes, person.landmarks
        crops = np.empty((len(boxes), c.crop_size, c.crop_size, 3), np.uint8)
        crop_landmarks = np.empty_like(landmarks)
        for t, (image, box) in enumerate(zip(frames.images, boxes)):
            crops[t], (x0, y0, scale) = crop_square(image, box, c.margin, c.crop_size)
            crop_landmarks[t] = (landmarks[t] - (x0, y0)) * scale
        tracks.append(
            FaceTrack(
                indices=frames.indices,
                crops=crops,
                boxes=boxes,
                detected=person.detected,
                landmarks=crop_landmarks,
                in_shot=person.in_shot,
                shot_count=int(shots[-1]) + 1,
                other_faces=person.other_faces,
                identity=identity,
            )
        )
    if require:
        require_face(frames, tracks[0], c)
    return tracks


def track_faces(
    frames: Frames, faces: list[FrameFaces], contract: Preprocessing, require: bool = True
) -> FaceTrack:
    """Follow and crop the dominant face, given MTCNN's output per frame (position-only
    tracks). Raises NoFaceError as ``track_people`` does."""
    return track_people(frames, faces, contract, 1, require)[0]


def require_face(frames: Frames, track: FaceTrack, contract: Preprocessing) -> None:
    """NoFaceError unless the face was found in the contract's share of the sampled frames."""
    found, sampled = track.frames_with_face, len(track.detected)
    needed = contract.min_face_frames(sampled)
    if found < needed:
        cuts = (
            f" (the sampled frames span {track.shot_count} shots)" if track.shot_count > 1 else ""
        )
        raise NoFaceError(
            f"face found in {found} of {sampled} sampled frames, {needed} needed{cuts}",
            found,
            frames,
        )


def extract_track(frames: Frames, detector: FaceDetector) -> FaceTrack:
    """Detect, track and crop the dominant face of sampled frames. Raises NoFaceError."""
    return track_faces(frames, detector.detect(frames.images), detector.contract)
