"""The catalog: streams, leases, recordings, segments, gaps, holds and the audit log.

Two engines behind one ``Catalog`` protocol: SQLite (the embedded default, one file) and
PostgreSQL (the fleet). Trio code uses the ``AsyncCatalog`` that ``open_async_catalog`` returns.
"""

from __future__ import annotations

from recorder.catalog._core import SqlCatalog as SqlCatalog
from recorder.catalog.aio import AsyncCatalog as AsyncCatalog
from recorder.catalog.aio import CatalogWebhookDedup as CatalogWebhookDedup
from recorder.catalog.aio import open_async_catalog as open_async_catalog
from recorder.catalog.aio import open_configured_async_catalog as open_configured_async_catalog
from recorder.catalog.base import (
    AuditChainCheck as AuditChainCheck,
)
from recorder.catalog.base import (
    AuditEvent as AuditEvent,
)
from recorder.catalog.base import (
    Catalog as Catalog,
)
from recorder.catalog.base import (
    EvidenceKind as EvidenceKind,
)
from recorder.catalog.base import (
    EvidenceRef as EvidenceRef,
)
from recorder.catalog.base import (
    GapRow as GapRow,
)
from recorder.catalog.base import (
    HoldScope as HoldScope,
)
from recorder.catalog.base import (
    Lease as Lease,
)
from recorder.catalog.base import (
    LegalHoldRow as LegalHoldRow,
)
from recorder.catalog.base import (
    NewRecordFile as NewRecordFile,
)
from recorder.catalog.base import (
    NewSegment as NewSegment,
)
from recorder.catalog.base import (
    ParticipantInfo as ParticipantInfo,
)
from recorder.catalog.base import (
    Product as Product,
)
from recorder.catalog.base import (
    RecordingDetail as RecordingDetail,
)
from recorder.catalog.base import (
    RecordingRow as RecordingRow,
)
from recorder.catalog.base import (
    RecordingStart as RecordingStart,
)
from recorder.catalog.base import (
    RecordingStatus as RecordingStatus,
)
from recorder.catalog.base import (
    RenewResult as RenewResult,
)
from recorder.catalog.base import (
    StreamEvent as StreamEvent,
)
from recorder.catalog.base import (
    StreamRow as StreamRow,
)
from recorder.catalog.base import (
    StreamState as StreamState,
)
from recorder.catalog.base import (
    UploadState as UploadState,
)
from recorder.catalog.connect import open_catalog as open_catalog
from recorder.catalog.connect import open_configured_catalog as open_configured_catalog
