ALTER TABLE importer.runs DROP COLUMN oauth;
