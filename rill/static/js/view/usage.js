// The Settings dialog's usage section: the totals line, a bar chart of tokens per day (an inline
// SVG, prompt and completion stacked) and a table per model. It only shows what it is given, and
// builds every node with DOM APIs (text as text, never as markup).
import {
  axisMax, chartSummary, dayLabel, daySlots, formatCompact, formatCost, formatCount, modelTotals, slotTitle,
  totalsText,
} from "../usage.js";

const SVG = "http://www.w3.org/2000/svg";

// The chart's geometry, in viewBox units (it scales to the dialog's width).
const WIDTH = 320;
const HEIGHT = 118;
const LEFT = 30;          // room for the axis labels
const RIGHT = WIDTH - 1;
const TOP = 6;
const BASE = 98;          // the zero line
const LABEL_Y = 112;
const BAR = 0.7;          // a bar's share of its day's width
const MIN_SEGMENT = 0.75; // a non-zero segment stays visible however small

const round = (n) => Math.round(n * 100) / 100;

function svg(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text != null) node.textContent = text;
  return node;
}

function cell(tag, text, className = "") {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) node.className = className;
  return node;
}

export class UsageView {
  constructor(root) {
    this.root = root;
    this.status = root.querySelector(".usage-status");
    this.result = root.querySelector(".usage-result");
    this.who = root.querySelector(".usage-who");
    this.totals = root.querySelector(".usage-totals");
    this.chart = root.querySelector(".usage-chart");
    this.models = root.querySelector(".usage-models");
    this.rows = this.models.querySelector("tbody");
    this.chart.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  }

  loading() {
    this.root.setAttribute("aria-busy", "true");
    this.setStatus("Loading…");
    this.result.hidden = true;
  }

  failed(message) {
    this.root.removeAttribute("aria-busy");
    this.setStatus(`Usage could not be loaded: ${message}`, true);
    this.result.hidden = true;
  }

  // A GET /api/usage body. Throws (showing nothing new) when it is not in the contract's form.
  show(body) {
    const slots = daySlots(body);
    const models = modelTotals(body);
    this.who.textContent = `${body.user ? `${body.user} · ` : ""}${dayLabel(body.since)} – ${dayLabel(body.until)} (UTC)`;
    this.totals.textContent = totalsText(body.totals);
    this.drawChart(slots);
    this.fillModels(models);
    this.root.removeAttribute("aria-busy");
    this.setStatus(models.length ? "" : "No usage in these days yet.");
    this.result.hidden = false;
  }

  setStatus(text, error = false) {
    this.status.textContent = text;
    this.status.hidden = !text;
    this.status.classList.toggle("is-error", error);
  }

  drawChart(slots) {
    const top = axisMax(slots);
    const plot = BASE - TOP;
    const step = (RIGHT - LEFT) / slots.length;
    const width = step * BAR;
    const height = (value) => (value > 0 ? Math.max(MIN_SEGMENT, (value / top) * plot) : 0);
    const nodes = [
      svg("line", { class: "usage-grid", x1: LEFT, x2: RIGHT, y1: TOP, y2: TOP }),
      svg("line", { class: "usage-grid", x1: LEFT, x2: RIGHT, y1: TOP + plot / 2, y2: TOP + plot / 2 }),
      svg("text", { class: "usage-tick", x: LEFT - 4, y: TOP + 3, "text-anchor": "end" }, formatCompact(top)),
      svg("text", { class: "usage-tick", x: LEFT - 4, y: BASE + 3, "text-anchor": "end" }, "0"),
    ];
    slots.forEach((slot, i) => {
      const x = LEFT + i * step;
      const barX = round(x + (step - width) / 2);
      const prompt = height(slot.prompt);
      const completion = height(slot.completion);
      const day = svg("g", { class: "usage-day" });
      day.append(
        svg("title", {}, slotTitle(slot)),
        svg("rect", { class: "usage-slot", x: round(x), y: TOP, width: round(step), height: plot }),
        svg("rect", { class: "usage-prompt", x: barX, y: round(BASE - prompt), width: round(width), height: round(prompt) }),
        svg("rect", {
          class: "usage-completion", x: barX, y: round(BASE - prompt - completion), width: round(width),
          height: round(completion),
        }),
        // The whole bar (zero-height on a day without usage), with the day's figures for tests.
        svg("rect", {
          class: "usage-bar", x: barX, y: round(BASE - prompt - completion), width: round(width),
          height: round(prompt + completion), "data-day": slot.day, "data-prompt": slot.prompt,
          "data-completion": slot.completion, "data-turns": slot.turns,
        }),
      );
      nodes.push(day);
    });
    nodes.push(svg("line", { class: "usage-axis", x1: LEFT, x2: RIGHT, y1: BASE, y2: BASE }));
    const middle = Math.floor(slots.length / 2);
    const labels = slots.length > 2 ? [[0, "start"], [middle, "middle"], [slots.length - 1, "end"]] : [[0, "start"]];
    for (const [i, anchor] of labels) {
      const x = anchor === "start" ? LEFT : anchor === "end" ? RIGHT : LEFT + (i + 0.5) * step;
      nodes.push(svg("text", { class: "usage-tick", x: round(x), y: LABEL_Y, "text-anchor": anchor }, dayLabel(slots[i].day)));
    }
    this.chart.replaceChildren(...nodes);
    this.chart.setAttribute("aria-label", chartSummary(slots));
  }

  fillModels(models) {
    this.rows.replaceChildren(...models.map((m) => {
      const row = document.createElement("tr");
      const tokens = cell("td", formatCount(m.tokens), "number");
      tokens.title = `${formatCount(m.prompt)} prompt + ${formatCount(m.completion)} completion`;
      const cost = cell("td", m.cost == null ? "—" : formatCost(m.cost), "number");
      if (m.cost == null) cost.title = "No price is set for this model";
      row.append(cell("th", m.model), cell("td", formatCount(m.turns), "number"), tokens, cost);
      row.firstChild.scope = "row";
      return row;
    }));
    this.models.hidden = models.length === 0;
  }
}
