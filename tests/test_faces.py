from collections.abc import Callable

import cv2
import numpy as np
import pytest

import scanner.faces as faces_module
from scanner.contract import Preprocessing
from scanner.errors import ClipError
from scanner.faces import (
    AREA_TABLE_FROM,
    FaceDetector,
    FrameFaces,
    NoFaceError,
    area_square,
    crop_square,
    extract_track,
    link_tracks,
    select_people,
    select_track,
    shot_ids,
    track_people,
)
from scanner.identity import DESCRIPTOR
from scanner.video import Frames, VideoInfo, read_frames

from helpers import face_frames

CONTRACT = Preprocessing.for_backbone("test_efficientnet")


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(CONTRACT)


def test_crop_adds_margin_and_keeps_aspect():
    image = np.zeros((400, 400, 3), np.uint8)
    image[100:200, 150:230] = 255  # the "face": 80 wide, 100 tall
    crop, (x0, y0, scale) = crop_square(image, np.array([150, 100, 230, 200]), 0.3, 130)
    # side = max(80, 100) * 1.3 = 130, centred on (190, 150): no resampling at size 130
    assert (x0, y0, scale) == (125.0, 85.0, 1.0)
    assert crop.shape == (130, 130, 3)
    white = np.argwhere(crop[..., 0] == 255)
    assert white.min(0).tolist() == [15, 25] and white.max(0).tolist() == [114, 104]


def test_crop_pads_outside_the_frame_with_black():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop, (x0, y0, scale) = crop_square(image, np.array([-20, -10, 30, 40]), 0.0, 50)
    assert (x0, y0, scale) == (-20.0, -10.0, 1.0)
    assert (crop[:10] == 0).all() and (crop[:, :20] == 0).all()
    assert (crop[10:, 20:] == 200).all()
    crop, _ = crop_square(image, np.array([80, 80, 140, 140]), 0.3, 224)
    assert crop.shape == (224, 224, 3)
    assert crop[-1, -1].max() == 0 and crop[0, 0].min() == 200


def inter_area_square(image, x0, y0, side, size):
    """OpenCV's INTER_AREA of the black-padded square: what ``area_square`` computes."""
    canvas = np.zeros((side, side, 3), np.uint8)
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)


def test_area_square_is_opencvs_area_average(face_image):
    """Squares inside, across and outside the frame's edges, of sides that divide the crop's
    and that do not: OpenCV's INTER_AREA of the padded square, within one grey level on at
    most 1e-3 of the values (float64 and float32 rounding)."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (300, 500, 3), np.uint8)
    image = cv2.resize(face_image, (500, 300), interpolation=cv2.INTER_CUBIC)
    for frame in (image, noise):
        for _ in range(40):
            size = int(rng.choice([17, 50, 64]))
            side = int(rng.integers(size + 1, 700))
            x0, y0 = int(rng.integers(-side, 510)), int(rng.integers(-side, 310))
            got = area_square(frame, x0, y0, side, size).astype(int)
            want = inter_area_square(frame, x0, y0, side, size).astype(int)
            assert got.shape == (size, size, 3)
            assert np.abs(got - want).max() <= 1 and (got != want).mean() <= 1e-3
    assert area_square(image, 600, 0, 200, 50).max() == 0  # outside the frame: black
    for side in (10 * 30, 7 * 30, AREA_TABLE_FROM * 30):  # whole-number ratios
        got = area_square(noise, -40, 20, side, 30).astype(int)
        want = inter_area_square(noise, -40, 20, side, 30).astype(int)
        assert np.abs(got - want).max() <= 1 and (got != want).mean() <= 1e-3


def test_area_square_sums_in_float64_where_int32_would_overflow(monkeypatch):
    """Frames past INT32_TABLE_PIXELS (8K close-ups) take float64 sums: the same crops."""
    noise = np.random.default_rng(1).integers(0, 256, (300, 500, 3), np.uint8)
    want = area_square(noise, -40, 20, 400, 30)
    monkeypatch.setattr(faces_module, "INT32_TABLE_PIXELS", 1000)
    np.testing.assert_array_equal(area_square(noise, -40, 20, 400, 30), want)
    with pytest.raises(ValueError, match="uint8"):
        area_square(noise.astype(np.uint16), 0, 0, 400, 30)


def test_a_large_face_is_cropped_as_a_small_one(face_image):
    """``crop_square``'s two ways of area-averaging agree: a square of AREA_TABLE_FROM times
    the crop's side or more is reduced through ``area_square``."""
    image = cv2.resize(face_image, (1200, 900), interpolation=cv2.INTER_CUBIC)
    box = np.array([300.0, 250.0, 950.0, 980.0])  # 730 px tall; 949 px square with the margin
    crop, (x0, y0, scale) = crop_square(image, box, 0.3, 64)
    assert 949 >= AREA_TABLE_FROM * 64
    assert (x0, y0, scale) == (150.0, 140.0, 64 / 949)
    want = inter_area_square(image, 150, 140, 949, 64)
    assert np.abs(crop.astype(int) - want).max() <= 1
    side = AREA_TABLE_FROM * 64  # the first side through the table
    crop, _ = crop_square(image, np.array([400.0, 300.0, 400.0 + side, 300.0 + side]), 0.0, 64)
    want = inter_area_square(image, 400, 300, side, 64)
    assert np.abs(crop.astype(int) - want).max() <= 1


def faces(*boxes, prob=0.99):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    pts = np.repeat(((b[:, :2] + b[:, 2:]) / 2)[:, None, :], 5, axis=1)
    return FrameFaces(b, np.full(len(b), prob, np.float32), pts)


def test_track_follows_the_dominant_face_and_fills_gaps():
    big = [100, 100, 200, 200]
    small = [400, 50, 430, 80]
    frames = [faces(big, small), faces(small), faces([110, 105, 210, 205], small), faces()]
    track = select_track(frames, 0.9)
    boxes, landmarks, detected = track.boxes, track.landmarks, track.detected
    assert detected.tolist() == [True, False, True, False] and track.in_shot.all()
    assert boxes[0].tolist() == big
    assert boxes[1].tolist() == big  # filled from the nearest frame with the face
    assert boxes[3].tolist() == [110, 105, 210, 205]
    assert landmarks.shape == (4, 5, 2)


def test_track_prefers_the_face_seen_most():
    close_up_once = [0, 0, 300, 300]
    steady = [100, 100, 180, 180]
    frames = [faces(close_up_once, steady)] + [faces(steady) for _ in range(5)]
    assert select_track(frames, 0.9).detected.all()


def test_track_never_crosses_a_shot_cut():
    """The same place after a cut is someone else: separate tracks per shot, and the dominant
    one is the face seen in enough frames (min_frames) before a larger face seen too rarely."""
    here = [100, 100, 200, 200]  # side 100
    big = [50, 50, 300, 300]  # side 250
    frames = [faces(here)] * 4 + [faces(big)] * 2 + [faces(here)] * 2
    shots = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    track = select_track(frames, 0.9, shots, min_frames=3)
    assert track.detected.tolist() == [True] * 4 + [False] * 4
    assert track.in_shot.tolist() == [True] * 4 + [False] * 4
    assert track.boxes[7].tolist() == here  # filled from the nearest frame of its own shot
    # Presence alone (sum of box sides): 2 x 250 beats 4 x 100.
    assert (
        select_track(frames, 0.9, shots).detected.tolist() == [False] * 4 + [True] * 2 + [False] * 2
    )
    # Without shots, the boxes at the same place link into one track across both cuts.
    assert (
        select_track(frames, 0.9, None, min_frames=3).detected.tolist()
        == [True] * 4 + [False] * 2 + [True] * 2
    )


def test_shot_ids_split_at_cuts_only(face_image):
    scene_a = face_frames(face_image, 6)  # the portrait drifting on grey
    scene_b = [np.full_like(scene_a[0], (20, 60, 160)) for _ in range(3)]  # a blue wall
    ids = shot_ids(np.stack(scene_a[:3] + scene_b + scene_a[3:]), CONTRACT.shot_cut)
    assert ids.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert shot_ids(np.stack(scene_a), CONTRACT.shot_cut).tolist() == [0] * 6


def test_track_ignores_unconfident_boxes():
    assert select_track([faces([0, 0, 50, 50], prob=0.5)] * 3, 0.9) is None


def test_detects_and_crops_a_real_face(face_clip, detector):
    frames = read_frames(face_clip, 15, "random", 0)
    track = extract_track(frames, detector)
    assert track.frames_with_face == 15
    assert track.crops.shape == (15, 224, 224, 3)
    x1, y1, x2, y2 = track.boxes[0]
    assert 100 < (x1 + x2) / 2 < 220 and 20 < (y1 + y2) / 2 < 140
    # landmarks (eyes above mouth) land inside the crop
    lm = track.landmarks
    assert ((lm > 0) & (lm < 224)).all()
    assert (lm[:, :2, 1] < lm[:, 3:, 1]).all()


def test_no_face(noface_clip, detector):
    frames = read_frames(noface_clip, 15, "random", 0)
    with pytest.raises(ClipError) as e:  # one base for every clip-less outcome
        extract_track(frames, detector)
    assert isinstance(e.value, NoFaceError) and e.value.status == "no_face"
    assert e.value.frames_with_face < CONTRACT.min_face_frames()
    assert e.value.frames_sampled == 15 and e.value.info == frames.info


def test_video_errors_share_the_clip_error_fields(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ClipError) as e:
        read_frames(empty, 15, "random", 0)
    assert e.value.status == "not_video" and e.value.info is None
    assert (e.value.frames_sampled, e.value.frames_with_face) == (0, 0)


@pytest.mark.parametrize("size", [(5, 5), (11, 9), (30, 20)])
def test_tiny_frames_do_not_crash(detector, size):
    images = np.zeros((15, size[1], size[0], 3), np.uint8)
    info = VideoInfo(size[0], size[1], 25.0, 15, 0.6)
    with pytest.raises(NoFaceError):
        extract_track(Frames(info, tuple(range(15)), images), detector)


def test_large_frames_are_detected_downscaled(detector, face_image):
    import cv2

    big = cv2.resize(face_image, (2160, 2160))
    canvas = np.zeros((2160, 3840, 3), np.uint8)
    canvas[:, 800:2960] = big
    found = detector.detect(canvas[None])[0]
    assert len(found.boxes) >= 1
    x1, y1, x2, y2 = found.boxes[found.probs.argmax()]
    # the face of the 512-pixel portrait spans about x 180..270, y 60..175; scaled by 4.22
    assert 800 + 4.22 * 150 < (x1 + x2) / 2 < 800 + 4.22 * 300
    assert 4.22 * 40 < (y1 + y2) / 2 < 4.22 * 200


def test_every_face_seen_in_enough_frames_is_a_person_largest_first():
    big, mid, small = [0, 0, 100, 100], [200, 0, 280, 80], [400, 0, 460, 60]
    rare = [600, 0, 800, 200]  # the largest, but in 2 frames only
    frames = [faces(big, mid, small)] * 5 + [faces(big, small, rare)] * 2 + [faces(mid)] * 3
    people = select_people(frames, 0.9, None, min_frames=4, max_people=4)
    assert [p.boxes[0].tolist() for p in people] == [big, mid, small]
    assert [int(p.detected.sum()) for p in people] == [7, 8, 7]
    assert all(p.other_faces == 0 for p in people)
    two = select_people(frames, 0.9, None, min_frames=4, max_people=2)
    assert [p.boxes[0].tolist() for p in two] == [big, mid] and two[0].other_faces == 1
    one = select_track(frames, 0.9, None, min_frames=4)  # the dominant face alone, as before
    assert one.boxes[0].tolist() == big and one.other_faces == 2


def test_a_crowd_that_moves_far_between_frames_is_joined_into_one_track_a_person():
    """Twelve people jump about between sampled frames, so position links little: their
    descriptors join the pieces back into one track per person, every box its own person's."""
    rng = np.random.default_rng(0)
    people, frames = 12, 15
    ident = rng.normal(0, 0.3, (people, 128)).astype(np.float32)
    pos = rng.uniform(0, 1800, (people, 2))
    seq, descriptors, who = [], [], []
    for _ in range(frames):
        pos = pos + rng.normal(0, 120, pos.shape)
        order = rng.permutation(people)
        seq.append(faces(*[[*pos[p], *(pos[p] + 60)] for p in order]))
        descriptors.append({k: ident[p] + rng.normal(0, 0.01, 128) for k, p in enumerate(order)})
        who.append(order)
    assert len(link_tracks(seq, 0.9)) > 3 * people  # by position alone: pieces
    tracks = link_tracks(seq, 0.9, None, descriptors)
    assert len(tracks) == people
    assert all(len({who[t][k] for t, k in track.items()}) == 1 for track in tracks)
    assert sorted(len(track) for track in tracks) == [frames] * people


def test_descriptors_keep_a_track_one_person_when_faces_swap_places():
    """Two people swap places between two sampled frames: by position, each track goes on
    with the other person; with identity descriptors each track stays one person, and the two
    pieces of each are joined again."""
    left, right = [0, 0, 100, 100], [110, 0, 210, 100]
    a, b = np.zeros(128, np.float32), np.full(128, 0.1, np.float32)  # 1.13 apart
    frames = [faces(left, right)] * 3 + [faces(right, left)] * 3  # box 0 is always person a
    descriptors = [{0: a, 1: b}] * 6
    by_position = link_tracks(frames, 0.9)
    assert by_position == [
        {t: 0 for t in range(3)} | {t: 1 for t in range(3, 6)},
        {t: 1 for t in range(3)} | {t: 0 for t in range(3, 6)},
    ]
    by_identity = link_tracks(frames, 0.9, None, descriptors)
    assert sorted(by_identity, key=lambda t: t[0]) == [
        {t: 0 for t in range(6)},
        {t: 1 for t in range(6)},
    ]
    # Far apart, a person's two pieces would not be joined by position either.
    jump = [faces(left)] * 3 + [faces([400, 300, 500, 400])] * 3
    assert len(link_tracks(jump, 0.9)) == 2
    assert len(link_tracks(jump, 0.9, None, [{0: a}] * 6)) == 1
    # Unlike descriptors keep them apart; no descriptor (a face too small) decides nothing.
    assert len(link_tracks(jump, 0.9, None, [{0: a}] * 3 + [{0: b}] * 3)) == 2
    assert len(link_tracks(jump, 0.9, None, [{0: None}] * 6)) == 2
    # A descriptor that came out NaN matches nothing, and keeps no other pair from joining.
    nan = np.full(128, np.nan, np.float32)
    two = [faces(left, [600, 0, 700, 100])] * 3 + [
        faces([400, 300, 500, 400], [0, 300, 100, 400])
    ] * 3
    assert len(link_tracks(two, 0.9, None, [{0: a, 1: nan}] * 3 + [{0: a, 1: nan}] * 3)) == 3
    # Never across a shot cut, whatever the descriptors say.
    assert len(link_tracks(frames[:2] * 2, 0.9, np.array([0, 0, 1, 1]), [{0: a, 1: b}] * 4)) == 4


class PeopleEmbedder:
    """A stand-in for dlib's embedder on synthetic frames: frame t's image holds t in its first
    pixel, and ``who(t, box)`` is the descriptor of the person in that box. Records each box
    it describes as (frame, x1)."""

    def __init__(self, who: Callable[[int, np.ndarray], np.ndarray]) -> None:
        self.who, self.described = who, []

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
        t = int(image[0, 0, 0])
        self.described += [(t, int(box[0])) for box in boxes]
        return [self.who(t, box) for box in boxes]


def test_descriptors_only_at_track_ends_unless_the_person_changes():
    """Of each position track only the first and last face is described when they are one
    person; a track whose ends are two people (someone took the place of another between two
    sampled frames) has every face described, and is split into one track per person. A face
    too small for a descriptor is never described."""
    n, left, right, tiny = 15, [20, 20, 120, 120], [300, 20, 400, 120], [500, 20, 530, 50]
    a, b, c = (np.full(128, v, np.float32) for v in (0.0, 0.1, -0.1))  # 1.13 or 2.26 apart
    images = np.full((n, 140, 560, 3), 90, np.uint8)
    images[:, 0, 0, 0] = np.arange(n)
    frames = Frames(VideoInfo(560, 140, 25.0, n, n / 25), tuple(range(n)), images)
    detected = [faces(left, right, tiny)] * n

    def people_of(embedder: PeopleEmbedder) -> list[list[int]]:
        people = track_people(frames, detected, CONTRACT, 4, True, embedder)
        assert all(p.identity == DESCRIPTOR for p in people)
        return [np.flatnonzero(p.detected).tolist() for p in people]

    same = PeopleEmbedder(lambda t, box: a if box[0] == 20 else b)
    assert people_of(same) == [list(range(n)), list(range(n)), list(range(n))]
    assert sorted(same.described) == [(0, 20), (0, 300), (14, 20), (14, 300)]
    # From frame 8 on, person c stands where b stood: by position, one track.
    changed = PeopleEmbedder(lambda t, box: a if box[0] == 20 else b if t < 8 else c)
    assert people_of(changed) == [list(range(n)), list(range(8)), list(range(8, n)), list(range(n))]
    assert sorted(changed.described) == sorted([(0, 20), (14, 20)] + [(t, 300) for t in range(n)])


def test_area_crops_are_torch_area_interpolation_exactly(face_image):
    import torch
    from torch.nn.functional import interpolate

    from scanner.faces import area_crops, summed_area

    rng = np.random.default_rng(0)
    image = face_image[:300, :400]
    y0 = rng.integers(0, 250, 40)
    x0 = rng.integers(0, 350, 40)
    # boxes smaller and larger than the output, thin ones, and one the size of the frame
    y1 = np.minimum(300, y0 + rng.integers(1, 200, 40))
    x1 = np.minimum(400, x0 + rng.integers(1, 200, 40))
    y0[0], y1[0], x0[0], x1[0] = 0, 300, 0, 400
    chw = torch.as_tensor(image).permute(2, 0, 1).float()
    for size in (24, 48):
        got = area_crops(summed_area(image), y0, y1, x0, x1, size)
        want = torch.cat(
            [
                interpolate(chw[None, :, a:b, c:d], size=(size, size), mode="area")
                for a, b, c, d in zip(y0, y1, x0, x1)
            ]
        ).numpy()
        assert got.shape == (40, 3, size, size)
        assert np.array_equal(got, want)


def test_area_crops_and_area_resize_resize_whole_frames_like_torch(face_image):
    """The pyramid's levels (``area_resize``, channels first) and a whole-frame crop are
    torch's area interpolation of the frame, bit for bit."""
    import torch
    from torch.nn.functional import interpolate

    from scanner.faces import area_crops, area_resize, summed_area

    image = face_image[:360]
    table = summed_area(image)
    whole = (np.array([0]), np.array([360]), np.array([0]), np.array([512]))
    chw = torch.as_tensor(image).permute(2, 0, 1).float()[None]
    for size in [(217, 302), (27, 38), (400, 600)]:
        want = interpolate(chw, size=size, mode="area").numpy()
        assert np.array_equal(area_crops(table, *whole, size), want)
        assert np.array_equal(area_resize(table, size), want[0])


def test_mtcnn_detect_is_facenet_mtcnn_detect(face_image):
    """The scanner's MTCNN pass gives facenet-pytorch's boxes, scores and landmarks, bit for
    bit, on frames with one face, two faces of different sizes and none; with its networks
    run by onnxruntime, the same faces within a hundredth of a pixel."""
    import cv2
    import torch

    from scanner.faces import OnnxNets, mtcnn_detect

    two = np.zeros((360, 640, 3), np.uint8)
    two[40:296, 20:276] = cv2.resize(face_image, (256, 256))
    two[200:328, 400:528] = cv2.resize(face_image, (128, 128))
    frames = np.stack([cv2.resize(face_image, (640, 360)), two, np.zeros_like(two)])
    detector = FaceDetector(CONTRACT)
    with torch.inference_mode():
        boxes, probs, points = detector.mtcnn.detect(frames, landmarks=True)
        found = mtcnn_detect(detector.mtcnn, frames)
        onnx = mtcnn_detect(detector.mtcnn, frames, OnnxNets(detector.mtcnn))
    assert found[2] is None and boxes[2] is None and onnx[2] is None
    assert len(found[1][0]) >= 2
    for i in range(2):
        assert np.array_equal(found[i][0], boxes[i])
        assert np.array_equal(found[i][1], probs[i])
        assert np.array_equal(found[i][2], points[i])
        np.testing.assert_allclose(onnx[i][0], boxes[i], atol=1e-2)
        np.testing.assert_allclose(onnx[i][1], probs[i], atol=1e-4)
        np.testing.assert_allclose(onnx[i][2], points[i], atol=1e-2)


def test_detector_runs_mtcnn_through_onnxruntime_on_the_cpu():
    pytest.importorskip("onnxruntime")
    from scanner.faces import OnnxNets

    assert isinstance(FaceDetector(CONTRACT).nets, OnnxNets)
    assert FaceDetector(CONTRACT, onnx=False).nets is None


def test_mtcnn_graphs_are_exported_once_into_the_user_cache(tmp_path, monkeypatch):
    """The first OnnxNets exports MTCNN's networks into the user's cache; the next reads them
    there without exporting, and its networks give PyTorch's outputs within 1e-5."""
    pytest.importorskip("onnxruntime")
    import torch
    from facenet_pytorch import MTCNN

    from scanner.faces import OnnxNets

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    mtcnn = MTCNN(keep_all=True)
    OnnxNets(mtcnn)
    (folder,) = (tmp_path / "dfscan" / "onnx").iterdir()
    assert folder.name.startswith("mtcnn-")
    assert sorted(p.name for p in folder.iterdir()) == ["onet.onnx", "pnet.onnx", "rnet.onnx"]
    exports = []
    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kw: exports.append(args))
    nets = OnnxNets(mtcnn)
    assert exports == []
    torch.manual_seed(0)
    for name, shape in (
        ("pnet", (2, 3, 61, 83)),
        ("rnet", (5, 3, 24, 24)),
        ("onet", (5, 3, 48, 48)),
    ):
        x = torch.rand(shape) * 2 - 1
        with torch.inference_mode():
            want = getattr(mtcnn, name)(x)
        got = getattr(nets, name)(x)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-5)


def test_mtcnn_graphs_cache_key_and_unwritable_cache(tmp_path, monkeypatch):
    """Other weights are other graphs (another cache folder); where the cache cannot be
    written the graphs are exported in memory all the same."""
    pytest.importorskip("onnxruntime")
    import torch
    from facenet_pytorch import MTCNN

    from scanner.faces import _mtcnn_key, mtcnn_graphs

    mtcnn = MTCNN(keep_all=True)
    key = _mtcnn_key(mtcnn)
    assert _mtcnn_key(MTCNN(keep_all=True)) == key
    with torch.no_grad():
        mtcnn.onet.dense6_3.bias[0] += 1e-3
    assert _mtcnn_key(mtcnn) != key
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    graphs = mtcnn_graphs(mtcnn)
    assert len(graphs) == 3 and all(graphs)
    assert blocked.is_file()


def test_detectors_made_and_run_in_threads_at_once_agree(face_image):
    """Scan workers each make a detector at the same time; they share one set of onnxruntime
    sessions and find the same face."""
    from concurrent.futures import ThreadPoolExecutor

    frames = np.stack([face_image] * 3)
    with ThreadPoolExecutor(3) as pool:
        found = list(pool.map(lambda _: FaceDetector(CONTRACT).detect(frames), range(3)))
    for faces in found:
        assert all(len(f.boxes) == 1 for f in faces)
        np.testing.assert_array_equal(faces[0].boxes, found[0][0].boxes)


def test_detector_errors_other_than_a_tiny_frame_are_not_taken_for_no_face(face_image):
    """Only MTCNN's empty pyramid (a frame under its 12-pixel window) means "no face"; any other
    failure of the networks is raised, not turned into an empty result (on a GPU a device
    mismatch once made every frame faceless)."""
    detector = FaceDetector(CONTRACT, onnx=False)
    assert detector.detect(np.zeros((1, 8, 8, 3), np.uint8))[0].boxes.shape[0] == 0

    def broken(x):
        raise RuntimeError("Expected all tensors to be on the same device")

    detector.mtcnn.pnet.forward = broken
    with pytest.raises(RuntimeError, match="same device"):
        detector.detect(np.stack([face_image]))

    def wrong(x):
        raise ValueError("operands could not be broadcast together")

    detector.mtcnn.pnet.forward = wrong
    with pytest.raises(ValueError, match="broadcast"):
        detector.detect(np.stack([face_image]))


@pytest.mark.gpu
def test_detector_on_cuda_finds_the_faces_found_on_the_cpu(face_image):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    frames = np.stack([face_image, np.zeros_like(face_image)])
    cpu = FaceDetector(CONTRACT, onnx=False).detect(frames)
    gpu = FaceDetector(CONTRACT, device="cuda").detect(frames)
    assert len(gpu[0].boxes) == len(cpu[0].boxes) == 1 and len(gpu[1].boxes) == 0
    np.testing.assert_allclose(gpu[0].boxes, cpu[0].boxes, atol=1.0)
    np.testing.assert_allclose(gpu[0].landmarks, cpu[0].landmarks, atol=1.0)


def _faces_frame(face_image, big: bool, mid: bool, small: bool, shift: int = 0) -> np.ndarray:
    """640x480 frame (detected at full size) with up to three portraits: faces of about 100
    px (found by the coarse pass), 50 px (found by it, but under the detector's small_face)
    and 20 px (found by the whole pyramid only)."""
    import cv2

    f = np.full((480, 640, 3), 90, np.uint8)
    if big:
        f[10 + shift : 460 + shift, 10:460] = cv2.resize(face_image, (450, 450))
    if mid:
        f[10:240, 10 + shift : 240 + shift] = cv2.resize(face_image, (230, 230))
    if small:
        f[200:300, 520 - shift : 620 - shift] = cv2.resize(face_image, (100, 100))
    return f


def _sides(found: FrameFaces) -> list[float]:
    b = found.boxes[found.probs >= CONTRACT.min_face_prob]
    return sorted(float(max(x[2] - x[0], x[3] - x[1])) for x in b)


def test_coarse_detection_falls_back_to_the_whole_pyramid_where_faces_may_be_small(face_image):
    """The coarse pass (the pyramid without its finest levels) is kept only where it found a
    confident face of at least ``small_face``; the first frame always goes through the whole
    pyramid, and small faces there send every frame through it. Where kept, the boxes are
    the whole pyramid's exactly."""
    coarse = FaceDetector(CONTRACT)
    full = FaceDetector(CONTRACT, coarse=False)
    assert 75 < coarse.small_face < 85  # twice the coarse pass's ~40 px smallest face

    def both(spec):
        frames = np.stack([_faces_frame(face_image, *s, shift=3 * i) for i, s in enumerate(spec)])
        before = (coarse.frames_full, coarse.frames_coarse)
        got, want = coarse.detect(frames), full.detect(frames)
        used = (coarse.frames_full - before[0], coarse.frames_coarse - before[1])
        return got, want, used

    # Large faces only: the coarse pass for every frame but the first, the same boxes.
    got, want, used = both([(True, False, False)] * 4)
    assert used == (1, 3)
    for g, w in zip(got, want):
        assert len(_sides(g)) == 1 and _sides(g)[0] > 90
        np.testing.assert_array_equal(g.boxes, w.boxes)
        np.testing.assert_array_equal(g.probs, w.probs)

    # A small face beside the large one in the first frame: every frame through the whole
    # pyramid, the small face found in each.
    got, want, used = both([(True, False, True)] * 4)
    assert used == (4, 0)
    for g, w in zip(got, want):
        assert len(_sides(g)) == 2 and _sides(g)[0] < 30
        np.testing.assert_array_equal(g.boxes, w.boxes)

    # First frame without small faces; then a frame where the coarse pass finds no face (a
    # small one only), one where it finds a face under small_face (beside a small one), and
    # one where it finds the large face: the first two go through the whole pyramid again.
    spec = [(True, False, False), (False, False, True), (False, True, True), (True, False, False)]
    got, want, used = both(spec)
    assert used == (3, 1)
    assert len(_sides(got[1])) == 1 and _sides(got[1])[0] < 30
    assert len(_sides(got[2])) == 2 and _sides(got[2])[0] < 30 < _sides(got[2])[1] < 80
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.boxes, w.boxes)
        np.testing.assert_array_equal(g.probs, w.probs)

    # What the coarse pass does not look for: a small face beside a large one in a later
    # frame only (the first frame showed none) is not found.
    got, want, used = both([(True, False, False), (True, False, True)])
    assert used == (1, 1)
    assert len(_sides(got[1])) == 1 and len(_sides(want[1])) == 2
