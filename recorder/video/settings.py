"""The ``[video]`` section: whether, and how, video and screen share are requested.

Video is off by default (it is costly): it is requested only when ``[rtms] media`` lists
``video`` / ``deskshare`` *and* the engagement's product is in ``[video] products`` (product
policy; Contact Center and Zoom Phone offer no video at all). RTMS sends H.264 above 5 fps
(video) or 1 fps (screen share); below that it would send JPG/PNG, which this recorder does not
record, so the request always names H.264.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recorder.products import Product
from recorder.rtms._enums import DataOption, MediaResolution, PayloadType
from recorder.rtms._wire_fields import DeskshareParams, VideoParams

if TYPE_CHECKING:
    from recorder.config import _Table


class Resolution(enum.StrEnum):
    SD = "sd"
    HD = "hd"
    FHD = "fhd"
    QHD = "qhd"


@dataclass(frozen=True, slots=True)
class VideoConfig:
    #: Camera video frame rate asked for (H.264).
    fps: int = 25
    #: Screen-share frame rate asked for (H.264).
    deskshare_fps: int = 5
    resolution: Resolution = Resolution.HD
    deskshare_resolution: Resolution = Resolution.FHD
    #: Record this one participant's camera (``data_opt`` 4 and VIDEO_SUBSCRIPTION_REQ)
    #: instead of the active speaker; empty = active speaker.
    individual_user_id: str = ""
    #: Products whose engagements are recorded with video when ``[rtms] media`` asks for it.
    products: tuple[Product, ...] = (Product.MEETING, Product.WEBINAR, Product.SESSION)
    #: A segment is sealed on the first keyframe after this many seconds.
    segment_seconds: int = 60

    def video_params(self) -> VideoParams:
        return VideoParams(
            codec=PayloadType.H264,
            resolution=MediaResolution[self.resolution.name],
            data_opt=(
                DataOption.VIDEO_SINGLE_INDIVIDUAL_STREAM
                if self.individual_user_id
                else DataOption.VIDEO_SINGLE_ACTIVE_STREAM
            ),
            fps=self.fps,
        )

    def deskshare_params(self) -> DeskshareParams:
        return DeskshareParams(
            codec=PayloadType.H264,
            resolution=MediaResolution[self.deskshare_resolution.name],
            fps=self.deskshare_fps,
        )


def parse_video(t: _Table) -> VideoConfig:
    d = VideoConfig()
    user = t.string("individual_user_id", d.individual_user_id)
    if len(user) > 64:
        raise t.error("individual_user_id", "longer than 64 characters")
    return VideoConfig(
        # RTMS sends H.264 only above 5 fps (video) and 1 fps (screen share); below, it falls
        # back to JPG/PNG, which is not recorded (rtms-protocol §5.3).
        fps=t.integer("fps", d.fps, minimum=6, maximum=30),
        deskshare_fps=t.integer("deskshare_fps", d.deskshare_fps, minimum=2, maximum=30),
        resolution=t.choice("resolution", d.resolution, Resolution),
        deskshare_resolution=t.choice("deskshare_resolution", d.deskshare_resolution, Resolution),
        individual_user_id=user,
        products=t.choices("products", d.products, Product),
        segment_seconds=t.integer("segment_seconds", d.segment_seconds, minimum=1, maximum=3600),
    )


__all__ = ["Resolution", "VideoConfig", "parse_video"]
