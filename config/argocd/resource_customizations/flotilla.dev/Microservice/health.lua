-- Argo CD health check for flotilla.dev/Microservice.
--
-- Reads what the Flotilla operator publishes, the way kstatus does: metadata.generation against
-- status.observedGeneration, then the conditions Stalled, Ready and Reconciling. A condition whose
-- observedGeneration is older than metadata.generation describes an older spec and is ignored.
--
-- Argo CD runs health scripts in Lua 5.1 (gopher-lua) without Lua's standard libraries (no
-- string.*, os.*, io.*) unless useOpenLibs is set, and gives each run 1 s. This script uses only
-- base functions and Lua 5.1 syntax (no <const>, //, & or goto).
-- The same script is in health.lua, in resource_customizations/ and in argocd-cm-patch.yaml;
-- tests/argocd_health.rs checks that the copies are identical.

local hs = {}

local function num(v)
  if v == nil then
    return nil
  end
  return tonumber(v)
end

local function nonempty(v)
  return v ~= nil and v ~= ""
end

local metadata = obj.metadata or {}
local spec = obj.spec or {}
local status = obj.status
local generation = num(metadata.generation)

-- The conditions that describe the current generation, by type.
local conditions = {}
if status ~= nil and type(status.conditions) == "table" then
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type ~= nil then
      local seen = num(c.observedGeneration)
      if seen == nil or generation == nil or seen >= generation then
        conditions[c.type] = c
      end
    end
  end
end

local function isTrue(conditionType)
  local c = conditions[conditionType]
  return c ~= nil and c.status == "True"
end

local function messageOf(conditionType, fallback)
  local c = conditions[conditionType]
  if c ~= nil and nonempty(c.message) then
    return c.message
  end
  return fallback
end

if metadata.deletionTimestamp ~= nil then
  -- Being deleted: say what holds it. The operator's own finalizer keeps the object until its
  -- database's data is kept or deleted as the policy says.
  local ours = false
  local others = ""
  if type(metadata.finalizers) == "table" then
    for _, f in ipairs(metadata.finalizers) do
      if f == "flotilla.dev/database-retention" then
        ours = true
      elseif others == "" then
        others = tostring(f)
      else
        others = others .. ", " .. tostring(f)
      end
    end
  end
  hs.status = "Progressing"
  hs.message = "Microservice is being deleted"
  if ours then
    hs.message = hs.message .. ": the operator keeps or deletes its database's data, as spec.database.deletionPolicy says"
  end
  if others ~= "" then
    hs.message = hs.message .. "; waiting for finalizers: " .. others
  end
  -- Argo CD shows its own "Pending deletion; blocked by finalizers: ..." for an object being
  -- deleted unless the check sets deletionMessage.
  hs.deletionMessage = hs.message
elseif status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to report status"
elseif num(status.observedGeneration) == nil
    or (generation ~= nil and num(status.observedGeneration) < generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "waiting for the operator to observe generation " .. generation
  else
    hs.message = "waiting for the operator to observe the latest generation"
  end
elseif spec.paused == true then
  hs.status = "Suspended"
  hs.message = "spec.paused is true: the operator leaves the children as they are"
elseif isTrue("Stalled") then
  local c = conditions["Stalled"]
  hs.status = "Degraded"
  if nonempty(c.reason) and nonempty(c.message) then
    hs.message = c.reason .. ": " .. c.message
  elseif nonempty(c.message) then
    hs.message = c.message
  elseif nonempty(c.reason) then
    hs.message = c.reason
  else
    hs.message = "the operator reports the Microservice as stalled"
  end
elseif isTrue("Ready") then
  hs.status = "Healthy"
  hs.message = messageOf("Ready", "ready")
elseif isTrue("Reconciling") then
  hs.status = "Progressing"
  hs.message = messageOf("Reconciling", "reconciling")
else
  -- Not ready, not stalled: still on its way (a database being provisioned, say).
  hs.status = "Progressing"
  hs.message = messageOf("Ready", "waiting for the operator to report Ready")
end

return hs
