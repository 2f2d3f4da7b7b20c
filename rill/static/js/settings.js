// User settings, kept in localStorage. Anything missing or malformed falls back to its default.
const KEY = "rill.settings";

export const DEFAULTS = Object.freeze({
  stream: true,
  transport: "sse",   // sse | socketio
  model: "",          // "" = the server's default
  system: "",
  temperature: 0.7,
  maxTokens: 512,
  theme: "system",    // system | light | dark
  token: "",          // access token for a server with auth on
});

const CHOICES = { transport: ["sse", "socketio"], theme: ["system", "light", "dark"] };
const RANGES = { temperature: [0, 2], maxTokens: [1, 4096] };

function clean(raw) {
  const settings = { ...DEFAULTS };
  if (!raw || typeof raw !== "object") return settings;
  for (const [key, fallback] of Object.entries(DEFAULTS)) {
    let value = raw[key];
    if (typeof value !== typeof fallback) continue;
    if (CHOICES[key] && !CHOICES[key].includes(value)) continue;
    if (RANGES[key]) {
      const [low, high] = RANGES[key];
      if (!Number.isFinite(value)) continue;
      value = Math.min(high, Math.max(low, key === "maxTokens" ? Math.round(value) : value));
    }
    settings[key] = value;
  }
  return settings;
}

// {settings, error}: storage can be switched off or broken; the defaults still work then.
export function loadSettings() {
  try {
    const stored = localStorage.getItem(KEY);
    return { settings: clean(stored ? JSON.parse(stored) : null), error: null };
  } catch (err) {
    return { settings: { ...DEFAULTS }, error: `Settings could not be read (${err.message}); using the defaults.` };
  }
}

// {settings (cleaned), error}: when storage fails the settings still apply to this page.
export function saveSettings(values) {
  const settings = clean(values);
  try {
    localStorage.setItem(KEY, JSON.stringify(settings));
    return { settings, error: null };
  } catch (err) {
    return { settings, error: `Settings apply now but could not be saved for next time (${err.message}).` };
  }
}

// The chat request fields these settings set.
export function requestOptions(settings) {
  const options = { temperature: settings.temperature, max_tokens: settings.maxTokens };
  if (settings.model) options.model = settings.model;
  if (settings.system.trim()) options.system = settings.system;
  return options;
}
