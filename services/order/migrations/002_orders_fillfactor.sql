-- Leave room on each page of orders for a row's next version: an update that changes no indexed
-- column (an authentication, a failure shown on a pending order) is then a HOT update, with no
-- new index entries. Applies to pages written from now on.
ALTER TABLE orders SET (fillfactor = 80);
