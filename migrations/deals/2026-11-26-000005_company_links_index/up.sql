-- A company's page lists its deals: find them by company as by contact.
CREATE INDEX deals_companies_idx ON deals.deals USING gin (company_ids) WHERE deleted_at IS NULL AND company_ids <> '{}';
