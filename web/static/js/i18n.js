// Translations: one dictionary per language (zh.js, en.js), Chinese first;
// only the chosen one is downloaded. The choice is remembered in
// localStorage and a cookie (the server then renders the shell page in
// that language and preloads its dictionary); <html lang> follows it.
let dict = {}, cur = 'zh-CN';

export const lang = () => cur;

export function t(key, vars) {
  let s = dict[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

export async function setLang(l) {
  l = l === 'en' ? 'en' : 'zh-CN';
  dict = (await (l === 'en' ? import('./en.js') : import('./zh.js'))).default;
  cur = l;
  document.documentElement.lang = l;
  try { localStorage.setItem('qinba_lang', l); } catch { /* private mode */ }
  document.cookie = `qinba_lang=${l}; Path=/; Max-Age=31536000; SameSite=Strict`;
}

export function initLang() {
  let want = null;
  try { want = localStorage.getItem('qinba_lang'); } catch { /* private mode */ }
  return setLang(want || document.documentElement.lang);
}
