// DOM helpers. Text always goes in as text (textContent / text nodes),
// never as HTML: data from the API cannot become markup.
import { t, lang } from './i18n.js';

// h(tag, props, ...children): props.class, props.text, props.on{event},
// props.dataset, anything else via setAttribute (or as a property for
// value/checked/disabled/hidden). Children: nodes, strings, arrays, null.
export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  return fill(el, props, kids);
}

const SVGNS = 'http://www.w3.org/2000/svg';
export function svg(tag, props, ...kids) {
  return fill(document.createElementNS(SVGNS, tag), props, kids);
}

const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'muted', 'autoplay', 'playsInline', 'srcObject', 'open']);

function fill(el, props, kids) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false && !PROPS.has(k)) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  add(el, kids);
  return el;
}

function add(el, kids) {
  for (const k of kids) {
    if (k == null || k === false) continue;
    if (Array.isArray(k)) add(el, k);
    else el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

// put appends children like h() does (skipping null and false).
export function put(el, ...kids) { add(el, kids); return el; }

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

export function $(sel, root = document) { return root.querySelector(sel); }

// A labelled form field.
export function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', { text: label }), input, hint ? h('small', { class: 'muted', text: hint }) : null);
}

export function select(name, options, value) {
  return h('select', { name }, options.map(([v, label]) => h('option', { value: v, selected: v === value, text: label })));
}


export function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  if (isNaN(d)) return String(s);
  return d.toLocaleString(lang() === 'en' ? 'en-GB' : 'zh-CN', { dateStyle: 'short', timeStyle: 'short' });
}

// A status chip, e.g. a referral's state.
export function chip(kind, value) {
  return h('span', { class: 'chip chip-' + value, text: t(kind + '.' + value) });
}

let toastTimer;
export function toast(msg, bad) {
  const el = $('#toast');
  el.textContent = msg;
  el.className = 'toast' + (bad ? ' bad' : '');
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

// An error from api(): its message, or per-field messages shown next to the
// form's inputs.
export function showError(err, form) {
  if (form) {
    for (const m of form.querySelectorAll('.field-err')) m.remove();
    for (const [name, msg] of Object.entries(err.fields || {})) {
      const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
      if (input) input.closest('.field')?.append(h('small', { class: 'field-err', text: msg }));
    }
  }
  toast(err.message || String(err), true);
}

// A progress bar (value 0..1, or null for indeterminate).
export function progress() {
  const bar = h('progress', { max: '1' });
  const label = h('span', { class: 'muted' });
  const el = h('div', { class: 'progress', hidden: true }, bar, label);
  return {
    el,
    set(v, text) {
      el.hidden = false;
      if (v == null) bar.removeAttribute('value'); else bar.value = v;
      label.textContent = text || (v == null ? '' : Math.round(v * 100) + '%');
    },
    done() { el.hidden = true; },
  };
}
