"""Tenant restores against a real PostgreSQL: one tenant's rows back, everyone else's untouched.

"Unchanged" is measured, not assumed: an md5 of every tenant-scoped table's rows per tenant
(and of the rows with no tenant), before and after.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from orion_operator.backup.storage import S3Location, VolumeLocation
from orion_operator.restore.errors import RestoreError
from orion_operator.restore.run import RestoreRequest, run_restore
from orion_operator.restore.tenant import Column, ForeignKey, copy_columns, load_order
from tests.conftest import AppDatabase
from tests.restore_support import (
    backup_of,
    everyone,
    leftover_tenant_zips,
    rewrite_tenant_zip,
    seed,
    tenant_checksums,
)
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, s3_client


def request(db: AppDatabase, location: Any, key: str, **options: Any) -> RestoreRequest:
    return RestoreRequest(database_url=db.url, location=location, key=key, **options)


async def acme_backup(db: AppDatabase, location: Any) -> str:
    backup = await backup_of(db, location, kind="tenant", tenant="acme")
    return "tenants/" + backup.artifact.uri.split("/tenants/", 1)[1]


def damage_acme(db: AppDatabase) -> None:
    """Updates, deletes and inserts, in every kind of table, to acme's rows only."""
    db.execute(
        """UPDATE "Tenant" SET plan = 'free', name = 'Acme (damaged)' WHERE id = 'acme';
           UPDATE "User" SET name = 'overwritten' WHERE id = 'u1';
           DELETE FROM "Sale" WHERE id = 's2';
           DELETE FROM "AuditLog" WHERE "tenantId" = 'acme' AND id %% 2 = 0;
           UPDATE "Product" SET price = 0 WHERE "tenantId" = 'acme';
           INSERT INTO "Product" (id, "tenantId", sku, name) VALUES ('p9', 'acme', 'X', 'New');
           INSERT INTO "Sale" (id, "tenantId", "productId") VALUES ('s9', 'acme', 'p9');
           INSERT INTO "User" (id, email, "tenantId") VALUES ('u9', 'new@acme.test', 'acme')"""
    )


async def test_tenant_restore_brings_back_exactly_that_tenants_rows(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    original = everyone(app_database)
    key = await acme_backup(app_database, location)
    damage_acme(app_database)
    app_database.execute("""UPDATE "Product" SET name = 'globex moved on' WHERE id = 'p3'""")
    others = {tenant: sums for tenant, sums in everyone(app_database).items() if tenant != "acme"}
    assert tenant_checksums(app_database, "acme") != original["acme"]

    result = await run_restore(request(app_database, location, key, overwrite=True))

    assert tenant_checksums(app_database, "acme") == original["acme"]
    assert {t: s for t, s in everyone(app_database).items() if t != "acme"} == others
    assert result.row_counts == {"AuditLog": 100, "Product": 2, "Sale": 2, "User": 2}
    assert result.row_counts == result.artifact.row_counts
    assert result.artifact.kind == "tenant" and result.artifact.tenant_id == "acme"
    assert result.verification[0].passed


async def test_a_tenant_with_rows_is_not_overwritten_without_overwrite(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    key = await acme_backup(app_database, location)
    damage_acme(app_database)
    before = everyone(app_database)

    with pytest.raises(RestoreError) as refused:
        await run_restore(request(app_database, location, key))

    assert refused.value.reason == "TenantNotEmpty"
    assert 'tenant "acme" still has rows' in refused.value.message
    assert "overwrite: true" in refused.value.message
    assert everyone(app_database) == before


async def test_a_deleted_tenant_comes_back_without_overwrite(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    original = everyone(app_database)
    key = await acme_backup(app_database, location)
    app_database.execute(
        """DELETE FROM "Sale" WHERE "tenantId" = 'acme';
           DELETE FROM "AuditLog" WHERE "tenantId" = 'acme';
           DELETE FROM "Product" WHERE "tenantId" = 'acme';
           DELETE FROM "User" WHERE "tenantId" = 'acme';
           DELETE FROM "Tenant" WHERE id = 'acme'"""
    )

    await run_restore(request(app_database, location, key))

    assert everyone(app_database) == original


async def test_an_error_in_the_middle_rolls_everything_back(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    key = await acme_backup(app_database, location)
    damage_acme(app_database)
    before = everyone(app_database)

    # Sale is loaded after Product and User: its last row points at a product that does not
    # exist, so the foreign key fails after several tables were already replaced.
    def break_a_sale(entries: dict[str, bytes]) -> dict[str, bytes]:
        entries["Sale.csv"] = entries["Sale.csv"].replace(b",p2,", b",p404,")
        return entries

    await rewrite_tenant_zip(location, key, break_a_sale)
    with pytest.raises(RestoreError) as failed:
        await run_restore(request(app_database, location, key, overwrite=True))

    assert failed.value.reason == "TenantRestoreFailed"
    assert 'table "Sale"' in failed.value.message and "foreign key" in failed.value.message
    assert "rolled back" in failed.value.message
    assert everyone(app_database) == before


async def test_a_duplicate_key_with_another_tenant_fails_naming_the_line(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    key = await acme_backup(app_database, location)
    before = everyone(app_database)

    def steal_an_email(entries: dict[str, bytes]) -> dict[str, bytes]:
        entries["User.csv"] = entries["User.csv"].replace(b"bob@acme.test", b"hank@globex.test")
        return entries

    await rewrite_tenant_zip(location, key, steal_an_email)
    with pytest.raises(RestoreError) as failed:
        await run_restore(request(app_database, location, key, overwrite=True))
    assert 'table "User"' in failed.value.message and "COPY User, line" in failed.value.message
    # The duplicate value itself (another tenant's data) is not repeated in the message.
    assert "hank@globex.test" not in failed.value.message
    assert everyone(app_database) == before


async def test_a_changed_schema_in_the_second_table_fails_naming_table_and_columns(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    key = await acme_backup(app_database, location)
    damage_acme(app_database)
    app_database.execute("""ALTER TABLE "Product" ADD COLUMN "barcode" text""")
    before = everyone(app_database)

    with pytest.raises(RestoreError) as mismatch:
        await run_restore(request(app_database, location, key, overwrite=True))
    assert mismatch.value.reason == "SchemaMismatch"
    assert 'table "Product"' in mismatch.value.message and "'barcode'" in mismatch.value.message
    assert "allowAddedNullableColumns" in mismatch.value.message
    assert everyone(app_database) == before

    # The documented option fills an added nullable column with NULL.
    await run_restore(
        request(app_database, location, key, overwrite=True, allow_added_nullable_columns=True)
    )
    assert app_database.query(
        """SELECT count(*) FROM "Product" WHERE "tenantId" = 'acme' AND barcode IS NULL"""
    ) == [(2,)]


async def test_added_not_null_columns_and_dropped_columns_are_refused(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    key = await acme_backup(app_database, location)
    app_database.execute("""ALTER TABLE "User" ADD COLUMN "locale" text NOT NULL DEFAULT 'es'""")
    app_database.execute("""ALTER TABLE "Sale" ADD COLUMN "channel" text""")
    app_database.execute("""UPDATE "Sale" SET channel = 'web'""")
    app_database.execute("""ALTER TABLE "Sale" ALTER COLUMN channel SET NOT NULL""")
    with pytest.raises(RestoreError) as required:
        await run_restore(
            request(app_database, location, key, overwrite=True, allow_added_nullable_columns=True)
        )
    assert 'table "Sale"' in required.value.message and "NOT NULL without a default" in (
        required.value.message
    )

    app_database.execute("""ALTER TABLE "Sale" DROP COLUMN channel""")
    app_database.execute("""ALTER TABLE "AuditLog" DROP COLUMN action""")
    with pytest.raises(RestoreError) as gone:
        await run_restore(request(app_database, location, key, overwrite=True))
    assert 'table "AuditLog"' in gone.value.message and "no longer has" in gone.value.message


async def test_other_tenants_rows_that_reference_the_tenant_stop_the_restore(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    key = await acme_backup(app_database, location)
    # A cross-tenant reference (an integrity violation the restore must not make worse).
    app_database.execute(
        """INSERT INTO "Sale" (id, "tenantId", "productId") VALUES ('sx', 'globex', 'p1')"""
    )
    before = everyone(app_database)
    with pytest.raises(RestoreError) as refused:
        await run_restore(request(app_database, location, key, overwrite=True))
    assert refused.value.reason == "OtherTenantsReference"
    assert '"Sale"' in refused.value.message and '"Product"' in refused.value.message
    assert everyone(app_database) == before


async def test_row_counts_are_checked_against_the_manifest(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    key = await acme_backup(app_database, location)
    before = everyone(app_database)

    def claim_more(manifest: dict[str, Any]) -> None:
        manifest["rowCounts"]["AuditLog"] = 101

    await rewrite_tenant_zip(location, key, lambda entries: entries, claim_more)
    with pytest.raises(RestoreError) as mismatch:
        await run_restore(request(app_database, location, key, overwrite=True))
    assert mismatch.value.reason == "RowCountMismatch"
    assert 'table "AuditLog"' in mismatch.value.message and "101" in mismatch.value.message
    assert everyone(app_database) == before


async def test_a_zip_carrying_another_tenants_rows_is_refused(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    key = await acme_backup(app_database, location)
    before = everyone(app_database)

    def smuggle(entries: dict[str, bytes]) -> dict[str, bytes]:
        entries["User.csv"] += b"u7,mallory@globex.test,Mallory,member,globex,2026-01-01 00:00:00\n"
        return entries

    def count_it(manifest: dict[str, Any]) -> None:
        manifest["rowCounts"]["User"] = 3

    await rewrite_tenant_zip(location, key, smuggle, count_it)
    with pytest.raises(RestoreError) as refused:
        await run_restore(request(app_database, location, key, overwrite=True))
    assert refused.value.reason == "ArtifactInvalid"
    assert "not tenant" in refused.value.message
    assert everyone(app_database) == before


async def test_a_corrupt_tenant_zip_is_refused_before_the_target_is_touched(
    app_database: AppDatabase, tmp_path: Path
) -> None:
    seed(app_database)
    location = VolumeLocation(tmp_path)
    key = await acme_backup(app_database, location)
    damage_acme(app_database)
    before = everyone(app_database)
    path = tmp_path / key
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(RestoreError) as refused:
        await run_restore(request(app_database, location, key, overwrite=True))
    assert refused.value.reason == "ChecksumMismatch"
    assert everyone(app_database) == before
    assert leftover_tenant_zips() == []


async def test_tenant_restore_from_s3(app_database: AppDatabase, s3_endpoint: str) -> None:
    seed(app_database)
    bucket = f"restore-{uuid.uuid4().hex[:8]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    location = S3Location(
        bucket=bucket,
        endpoint_url=s3_endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    original = everyone(app_database)
    backup = await backup_of(app_database, location, kind="tenant", tenant="acme")
    damage_acme(app_database)
    key = backup.artifact.uri.removeprefix(f"s3://{bucket}/")
    await run_restore(request(app_database, location, key, overwrite=True))
    assert everyone(app_database) == original


def test_load_order_puts_referenced_tables_first_and_refuses_rigid_cycles() -> None:
    def fk(child: str, parent: str, deferrable: bool = False) -> ForeignKey:
        return ForeignKey(f"{child}_{parent}", child, parent, ("a",), ("b",), deferrable)

    keys = [fk("Sale", "Product"), fk("Sale", "User"), fk("Product", "Product"), fk("X", "Y")]
    order = load_order(["AuditLog", "Product", "Sale", "User"], keys)
    assert order.index("Product") < order.index("Sale") and order.index("User") < order.index(
        "Sale"
    )
    # A deferrable key is deferred to the commit, so it does not constrain the order.
    assert load_order(["A", "B"], [fk("A", "B"), fk("B", "A", deferrable=True)]) == ["B", "A"]
    with pytest.raises(RestoreError) as cycle:
        load_order(["A", "B"], [fk("A", "B"), fk("B", "A")])
    assert cycle.value.reason == "SchemaUnsupported" and "DEFERRABLE" in cycle.value.message


def test_copy_columns_accepts_added_nullable_or_defaulted_columns_only_when_asked() -> None:
    columns = {
        "id": Column("id", True, False, False),
        "note": Column("note", False, False, False),
        "createdAt": Column("createdAt", True, True, False),
    }
    assert copy_columns("T", ["id", "note", "createdAt"], columns, False) == [
        "id",
        "note",
        "createdAt",
    ]
    with pytest.raises(RestoreError, match="'note', 'createdAt' are not in the backup"):
        copy_columns("T", ["id"], columns, False)
    assert copy_columns("T", ["id"], columns, True) == ["id"]
    strict = {**columns, "code": Column("code", True, False, False)}
    with pytest.raises(RestoreError, match="'code' are not in the backup and are NOT NULL"):
        copy_columns("T", ["id"], strict, True)
