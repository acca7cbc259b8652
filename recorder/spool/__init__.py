"""The local spool of sealed evidence and the uploader that moves it, verified, to the store."""

from __future__ import annotations

from recorder.spool.keys import SegmentKey as SegmentKey
from recorder.spool.keys import object_key as object_key
from recorder.spool.keys import parse_object_key as parse_object_key
from recorder.spool.keys import segment_key as segment_key
from recorder.spool.spool import DiskSpace as DiskSpace
from recorder.spool.spool import Spool as Spool
from recorder.spool.spool import SpooledJob as SpooledJob
from recorder.spool.spool import SpoolStats as SpoolStats
from recorder.spool.spool import UploadJob as UploadJob
from recorder.spool.spool import upload_job_for as upload_job_for
from recorder.spool.uploader import Backoff as Backoff
from recorder.spool.uploader import UploaderStats as UploaderStats
from recorder.spool.uploader import run_uploader as run_uploader
