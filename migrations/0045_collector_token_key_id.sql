-- 0045: the id of the JWT_SECRET key that signed each collector token (its `kid`), so the operator
-- rotating JWT_SECRET can see which keys live tokens and collectors still depend on
-- (`collectors.tokenKeys`, `npm run token-keys`; README "Rotating JWT_SECRET").
--
-- NULL: issued before key ids (no `kid` in the token), verified with the key whose id is "k1".
-- A nullable column without a default: no table rewrite.
ALTER TABLE collector_tokens ADD COLUMN key_id varchar(32);
