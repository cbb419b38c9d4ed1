-- The order service's own tables (schema "orders"). Money is bigint KRW throughout.

CREATE TABLE products (
    sku        text        PRIMARY KEY CHECK (sku ~ '^[A-Za-z0-9_-]{1,64}$'),
    name       text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    price      bigint      NOT NULL CHECK (price > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    customer_id    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handle         text        NOT NULL UNIQUE,
    -- SHA-256 of the bearer token; the token itself is never stored.
    token_hash     bytea       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    customer_key   text        NOT NULL UNIQUE CHECK (customer_key ~ '^[A-Za-z0-9_=.@-]{2,50}$'),
    points_balance bigint      NOT NULL DEFAULT 0 CHECK (points_balance >= 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE coupons (
    code             text        PRIMARY KEY CHECK (char_length(code) BETWEEN 1 AND 64),
    customer_id      bigint      NOT NULL REFERENCES customers (customer_id),
    kind             text        NOT NULL CHECK (kind IN ('FIXED', 'PERCENT')),
    amount_off       bigint      CHECK (amount_off > 0),
    percent_off      integer     CHECK (percent_off BETWEEN 1 AND 100),
    max_discount     bigint      CHECK (max_discount > 0),
    min_order_amount bigint      NOT NULL DEFAULT 0 CHECK (min_order_amount >= 0),
    expires_at       timestamptz NOT NULL,
    status           text        NOT NULL DEFAULT 'AVAILABLE'
                                 CHECK (status IN ('AVAILABLE', 'RESERVED', 'USED')),
    -- The order holding (RESERVED) or having spent (USED) the coupon: one coupon per order.
    order_id         text        UNIQUE,
    CHECK ((kind = 'FIXED' AND amount_off IS NOT NULL AND percent_off IS NULL)
        OR (kind = 'PERCENT' AND percent_off IS NOT NULL AND amount_off IS NULL)),
    CHECK ((status = 'AVAILABLE') = (order_id IS NULL))
);
CREATE INDEX coupons_by_customer ON coupons (customer_id);

CREATE TABLE orders (
    order_id         text        PRIMARY KEY CHECK (order_id ~ '^[A-Za-z0-9_-]{6,64}$'),
    customer_id      bigint      NOT NULL REFERENCES customers (customer_id),
    order_name       text        NOT NULL CHECK (char_length(order_name) BETWEEN 1 AND 100),
    subtotal         bigint      NOT NULL CHECK (subtotal > 0),
    coupon_code      text        REFERENCES coupons (code),
    coupon_discount  bigint      NOT NULL DEFAULT 0 CHECK (coupon_discount >= 0),
    points_used      bigint      NOT NULL DEFAULT 0 CHECK (points_used >= 0),
    amount           bigint      NOT NULL CHECK (amount >= 100),
    currency         text        NOT NULL DEFAULT 'KRW' CHECK (currency = 'KRW'),
    status           text        NOT NULL CHECK (status IN ('PENDING', 'PAID', 'EXPIRED',
                                 'CANCELED', 'REFUND_PENDING', 'PARTIALLY_REFUNDED', 'REFUNDED')),
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    payment_status   text        NOT NULL DEFAULT 'NONE' CHECK (payment_status IN ('NONE',
                                 'AUTHENTICATED', 'APPROVED', 'FAILED', 'PARTIALLY_REFUNDED',
                                 'REFUNDED')),
    payment_key      text        CHECK (char_length(payment_key) <= 200),
    approved_at      timestamptz,
    payment_method   text,
    failure_code     text,
    failure_message  text,
    failure_pg_code  text,
    payment_as_of    timestamptz,
    refunded_amount  bigint      NOT NULL DEFAULT 0,
    points_restored  bigint      NOT NULL DEFAULT 0,
    cancel_reason    text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (amount = subtotal - coupon_discount - points_used),
    CHECK (coupon_discount = 0 OR coupon_code IS NOT NULL),
    CHECK (refunded_amount BETWEEN 0 AND amount),
    CHECK (points_restored BETWEEN 0 AND points_used),
    CHECK (status <> 'PAID' OR payment_key IS NOT NULL)
);
CREATE INDEX orders_pending_by_expiry ON orders (expires_at) WHERE status = 'PENDING';
CREATE INDEX orders_by_customer ON orders (customer_id, created_at);

ALTER TABLE coupons
    ADD CONSTRAINT coupons_order_fk FOREIGN KEY (order_id) REFERENCES orders (order_id);

CREATE TABLE order_lines (
    order_id   text   NOT NULL REFERENCES orders (order_id),
    line_no    int    NOT NULL CHECK (line_no BETWEEN 1 AND 50),
    sku        text   NOT NULL REFERENCES products (sku),
    name       text   NOT NULL,
    unit_price bigint NOT NULL CHECK (unit_price > 0),
    quantity   int    NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    PRIMARY KEY (order_id, line_no),
    UNIQUE (order_id, sku)
);

CREATE TABLE refunds (
    refund_id       text        PRIMARY KEY CHECK (char_length(refund_id) BETWEEN 1 AND 100),
    order_id        text        NOT NULL REFERENCES orders (order_id),
    payment_key     text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('CUSTOMER', 'AUTOMATIC')),
    amount          bigint      NOT NULL CHECK (amount > 0),
    reason          text        NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 200),
    status          text        NOT NULL DEFAULT 'REQUESTED'
                                CHECK (status IN ('REQUESTED', 'SUCCEEDED', 'FAILED')),
    refunded_amount bigint      CHECK (refunded_amount >= 0),
    failure_code    text,
    failure_message text,
    requested_at    timestamptz NOT NULL,
    completed_at    timestamptz
);
CREATE INDEX refunds_by_order ON refunds (order_id, requested_at);
-- A buyer's refunds go one at a time (the order is REFUND_PENDING meanwhile).
CREATE UNIQUE INDEX refunds_one_open_per_order ON refunds (order_id)
    WHERE kind = 'CUSTOMER' AND status = 'REQUESTED';
