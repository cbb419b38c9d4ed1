// The demo storefront: products, coupon and points, "Place order" (the server prices it), "Pay"
// (the PG's SDK). Plain DOM, no innerHTML, no inline script: works under a strict CSP.
// The visitor is a session of their own (an HttpOnly cookie from POST /api/session): this script
// never sees or stores a credential.
"use strict";

(function () {
  const config = window.STOREFRONT_CONFIG;
  const $ = (id) => document.getElementById(id);
  const els = {
    customer: $("customer"),
    products: $("products"),
    form: $("order-form"),
    coupon: $("coupon"),
    points: $("points"),
    pointsBalance: $("points-balance"),
    placeOrder: $("place-order"),
    error: $("error"),
    summary: $("order-summary"),
    pay: $("pay"),
    signIn: $("sign-in"),
    signInToken: $("sign-in-token"),
    signOut: $("sign-out"),
  };
  let currentOrder = null;
  let sdk = null;

  const won = (value) => (typeof value === "number" ? `${value.toLocaleString("ko-KR")} KRW` : "—");

  function showError(message) {
    els.error.textContent = message;
    els.error.hidden = !message;
  }

  function element(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children || []) node.append(child);
    return node;
  }

  // A failed call as an Error whose message is the problem's human detail.
  async function problemOf(response) {
    let detail = `The server answered ${response.status}.`;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch (_) { /* not JSON */ }
    const error = new Error(detail);
    error.status = response.status;
    return error;
  }

  async function api(path, options) {
    const opts = options || {};
    const headers = { Accept: "application/json" };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method: opts.method || "GET",
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (_) {
      throw new Error("The shop is not reachable. Check your connection and try again.");
    }
    if (!response.ok) throw await problemOf(response);
    return response.status === 204 ? null : response.json();
  }

  function loadSdk() {
    if (sdk) return sdk;
    sdk = new Promise((resolve, reject) => {
      const script = element("script", { src: config.sdkUrl, async: true });
      script.addEventListener("load", () => resolve(window.TossPayments));
      script.addEventListener("error", () => {
        sdk = null;
        reject(new Error("The payment module could not be loaded. Please try again."));
      });
      document.head.append(script);
    });
    return sdk;
  }

  function productRow(product) {
    const quantity = element("input", {
      className: "qty",
      type: "number",
      min: "0",
      max: "99",
      step: "1",
      value: "0",
      inputMode: "numeric",
    });
    quantity.setAttribute("aria-label", `Quantity of ${product.name}`);
    const row = element("div", { className: "product" }, [
      element("span", { className: "name", textContent: product.name }),
      element("span", { className: "price", textContent: won(product.price) }),
      quantity,
    ]);
    row.dataset.sku = product.sku;
    return row;
  }

  function renderProducts(products) {
    els.products.replaceChildren(...products.map(productRow));
    if (!products.length) els.products.textContent = "No products for sale right now.";
  }

  function couponLabel(coupon) {
    const what = coupon.description || coupon.code;
    const minimum = coupon.minOrderAmount ? `, orders from ${won(coupon.minOrderAmount)}` : "";
    return `${coupon.code}: ${what}${minimum}`;
  }

  function renderMe(me, session) {
    const balance = me.pointsBalance ?? 0;
    const who = session.guest ? "a guest" : `customer ${session.customerKey}`;
    els.customer.textContent = `Signed in as ${who} · ${balance.toLocaleString("ko-KR")} points`;
    els.customer.dataset.customerKey = session.customerKey;
    els.pointsBalance.textContent = `(you have ${balance.toLocaleString("ko-KR")})`;
    els.pointsBalance.dataset.balance = String(balance);
    els.points.max = String(balance);
    for (const coupon of me.coupons || []) {
      els.coupon.append(element("option", { value: coupon.code, textContent: couponLabel(coupon) }));
    }
  }

  function orderRequest() {
    const items = [...els.products.querySelectorAll("[data-sku]")]
      .map((row) => ({ sku: row.dataset.sku, quantity: Number(row.querySelector("input.qty").value) }))
      .filter((item) => item.quantity !== 0);
    const body = { items };
    if (els.coupon.value) body.couponCode = els.coupon.value;
    const points = els.points.value.trim() === "" ? 0 : Number(els.points.value);
    if (points !== 0) body.points = points;
    return body;
  }

  function validRequest(body) {
    if (!body.items.length) return "Choose at least one product.";
    if (body.items.some((item) => !Number.isInteger(item.quantity) || item.quantity < 0)) {
      return "Quantities must be whole numbers.";
    }
    if (body.points !== undefined && (!Number.isInteger(body.points) || body.points < 0)) {
      return "Points must be a whole number, 0 or more.";
    }
    return "";
  }

  // Only the server's numbers are shown: the client never computes a price.
  function renderOrder(order) {
    $("order-id").textContent = order.orderId;
    $("order-subtotal").textContent = won(order.subtotal);
    $("order-coupon-discount").textContent = order.couponDiscount ? `− ${won(order.couponDiscount)}` : won(0);
    $("order-points").textContent = order.pointsUsed ? `− ${won(order.pointsUsed)}` : won(0);
    $("order-amount").textContent = won(order.amount);
    $("order-amount").dataset.amount = String(order.amount);
    els.summary.dataset.orderId = order.orderId;
    els.summary.hidden = false;
    els.pay.disabled = false;
  }

  async function placeOrder(event) {
    event.preventDefault();
    showError("");
    const body = orderRequest();
    const invalid = validRequest(body);
    if (invalid) return showError(invalid);
    els.placeOrder.disabled = true;
    try {
      currentOrder = await api("/api/orders", { method: "POST", body });
      renderOrder(currentOrder);
      loadSdk().catch(() => {}); // warm up; errors are reported on "Pay"
    } catch (error) {
      showError(error.message);
    } finally {
      els.placeOrder.disabled = false;
    }
  }

  async function pay() {
    if (!currentOrder) return;
    showError("");
    els.pay.disabled = true;
    try {
      const TossPayments = await loadSdk();
      const payment = TossPayments(config.clientKey).payment({ customerKey: currentOrder.customerKey });
      await payment.requestPayment({
        method: "CARD",
        amount: { currency: "KRW", value: currentOrder.amount },
        orderId: currentOrder.orderId,
        orderName: currentOrder.orderName,
        successUrl: `${window.location.origin}/payments/success`,
        failUrl: `${window.location.origin}/payments/fail`,
      });
    } catch (error) {
      showError(error && error.message ? error.message : "The payment could not be started.");
      els.pay.disabled = false;
    }
  }

  // Sandbox only: become one of the seeded demo customers by their (public) token.
  async function signIn(event) {
    event.preventDefault();
    showError("");
    try {
      await api("/api/session", { method: "POST", body: { token: els.signInToken.value.trim() } });
      window.location.reload();
    } catch (error) {
      showError(error.message);
    }
  }

  async function signOut() {
    try {
      await api("/api/session", { method: "DELETE" });
      window.location.reload();
    } catch (error) {
      showError(error.message);
    }
  }

  async function start() {
    if (!config) {
      showError("The shop is misconfigured: /storefront-config.js did not load.");
      return;
    }
    els.form.addEventListener("submit", placeOrder);
    els.pay.addEventListener("click", pay);
    els.signOut.addEventListener("click", signOut);
    if (config.mode === "sandbox") {
      els.signIn.hidden = false;
      els.signIn.addEventListener("submit", signIn);
    }
    try {
      const session = await api("/api/session", { method: "POST", body: {} });
      const [products, me] = await Promise.all([api("/api/products"), api("/api/me")]);
      renderProducts(Array.isArray(products) ? products : products.products || []);
      renderMe(me, session);
      document.body.dataset.ready = "true";
    } catch (error) {
      showError(error.message);
    }
  }

  start();
})();
