DROP TABLE importer.ids;
DROP TABLE importer.runs;
