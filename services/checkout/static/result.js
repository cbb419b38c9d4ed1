// The payment result page: follows the order until it is paid or failed, then says so.
// Polls GET /api/orders/{orderId} with the visitor's session cookie (never a token in the page).
// No inline script, no innerHTML: text only, so a strict CSP holds.
"use strict";

(function () {
  const root = document.getElementById("result");
  if (!root) return;
  const statusEl = document.getElementById("payment-status");
  const reasonEl = document.getElementById("failure-reason");
  const stillEl = document.getElementById("still-processing");
  const amountEl = document.getElementById("order-amount");
  const orderId = root.dataset.orderId || "";
  const paymentKey = root.dataset.paymentKey || "";
  const interval = Number(root.dataset.pollIntervalMs) || 700;
  const limit = Number(root.dataset.pollLimit) || 60;

  const HEADLINES = {
    PROCESSING: "Processing your payment…",
    PAID: "Payment complete",
    FAILED: "Payment failed",
    REFUNDED: "Payment refunded",
    ERROR: "We could not check this payment",
  };
  const FAILED_PAYMENT = new Set(["FAILED", "REJECTED", "ABORTED", "EXPIRED", "CANCELED"]);
  const FAILED_ORDER = new Set(["EXPIRED", "CANCELED", "CANCELLED", "FAILED"]);

  function show(status, reason) {
    statusEl.dataset.status = status;
    root.dataset.status = status;
    statusEl.textContent = HEADLINES[status] || status;
    reasonEl.textContent = reason || "";
    reasonEl.hidden = !reason;
  }

  function describeFailure(failure, fallback) {
    if (!failure || !(failure.message || failure.code)) return fallback;
    const message = failure.message || "The payment was not approved.";
    return failure.code ? `${message} (${failure.code})` : message;
  }

  // The order's outcome as one of HEADLINES' keys, with a reason for failures. The payment's
  // status decides, not a leftover failure: an earlier attempt may have failed.
  function outcome(order) {
    const status = String(order.status || "");
    const payment = order.payment || {};
    if (status === "PAID") return ["PAID", ""];
    if (status.includes("REFUND")) return ["REFUNDED", ""];
    if (FAILED_ORDER.has(status)) {
      return ["FAILED", describeFailure(payment.failure, `The order is ${status.toLowerCase()}.`)];
    }
    // A failure recorded for another attempt (an earlier one) says nothing about this one yet.
    const otherAttempt = paymentKey && payment.paymentKey && payment.paymentKey !== paymentKey;
    if (FAILED_PAYMENT.has(String(payment.status || "")) && !otherAttempt) {
      return ["FAILED", describeFailure(payment.failure, "The payment was not approved.")];
    }
    return ["PROCESSING", ""];
  }

  function formatAmount(order) {
    if (typeof order.amount !== "number") return null;
    return `${order.amount.toLocaleString("ko-KR")} ${order.currency || "KRW"}`;
  }

  async function fetchOrder() {
    const response = await fetch(`/api/orders/${encodeURIComponent(orderId)}`, {
      headers: { Accept: "application/json" },
      cache: "no-store",
      credentials: "same-origin",
    });
    if (response.status === 401) {
      return { error: "Open the shop in this browser first, then come back to this page.", fatal: true };
    }
    if (response.ok) return { order: await response.json() };
    let detail = `HTTP ${response.status}`;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch (_) { /* not JSON: keep the status */ }
    return { error: detail, fatal: response.status >= 400 && response.status < 500 && response.status !== 429 };
  }

  async function follow() {
    for (let attempt = 0; attempt < limit; attempt += 1) {
      let answer;
      try {
        answer = await fetchOrder();
      } catch (_) {
        answer = { error: "network error", fatal: false };
      }
      if (answer.order) {
        const amount = formatAmount(answer.order);
        if (amount) amountEl.textContent = amount;
        const [status, reason] = outcome(answer.order);
        if (status !== "PROCESSING") return show(status, reason);
      } else if (answer.fatal) {
        return show("ERROR", answer.error);
      }
      await new Promise((resolve) => setTimeout(resolve, interval));
    }
    stillEl.hidden = false;
    root.dataset.status = "TIMEOUT";
  }

  if (!orderId) return;
  if (root.dataset.initialStatus !== "PROCESSING") {
    // The failure is already known; only fill in the amount if the order can be read.
    fetchOrder().then((answer) => {
      const amount = answer.order && formatAmount(answer.order);
      if (amount) amountEl.textContent = amount;
    }, () => {});
    return;
  }
  follow();
})();
