-- A tenant's storage location is recorded as a URI whose scheme names the
-- backend: local:<path under STORAGE_ROOT> for the directory backend.

-- +goose Up
UPDATE tenants SET storage_path = 'local:' || storage_path WHERE storage_path NOT LIKE '%:%';
COMMENT ON COLUMN tenants.storage_path IS
    'storage location as a URI: local:<path relative to STORAGE_ROOT> for the directory backend';

-- +goose Down
COMMENT ON COLUMN tenants.storage_path IS NULL;
UPDATE tenants SET storage_path = substr(storage_path, length('local:') + 1) WHERE storage_path LIKE 'local:%';
