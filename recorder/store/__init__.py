"""Object stores behind one interface: a local directory (embedded default) and S3.

``recorder.store.s3`` is not imported here, so the embedded default never loads boto3.
"""

from __future__ import annotations

from recorder.store.base import LockMode as LockMode
from recorder.store.base import ObjectInfo as ObjectInfo
from recorder.store.base import ObjectStore as ObjectStore
from recorder.store.base import PutResult as PutResult
from recorder.store.base import StorePolicy as StorePolicy
from recorder.store.local import LocalStore as LocalStore
from recorder.store.memory import MemoryStore as MemoryStore
