DROP TABLE accounts.api_tokens;
DROP TABLE accounts.sessions;
DROP TABLE accounts.users;
DROP TABLE accounts.roles;
DROP TABLE accounts.groups;
DROP TABLE accounts.accounts;
