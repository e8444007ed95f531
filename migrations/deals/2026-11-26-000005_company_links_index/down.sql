DROP INDEX deals.deals_companies_idx;
