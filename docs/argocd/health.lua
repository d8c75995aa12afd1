-- Argo CD health check for every orion.io kind (Orion Operator); docs/argocd/render-argocd-cm
-- installs it under each kind's key.
--
-- Reads the status the way kstatus does: status.observedGeneration against
-- metadata.generation, then the Stalled, Reconciling and Ready conditions.
-- A suspended Tenant, BackupSchedule or DatabaseMaintenance is Suspended: Ready True, phase
-- Suspended; the other kinds have no such phase, and the check does not invent one.
-- Argo CD itself reports Missing (not in the cluster), "Pending deletion" while a
-- deletion is under way, and Unknown when this script fails.
local hs = {}

local function condition(status, type)
  if status.conditions == nil then
    return nil
  end
  for _, each in ipairs(status.conditions) do
    if each.type == type then
      return each
    end
  end
  return nil
end

local function describe(each)
  local reason = each.reason or each.type
  if each.message ~= nil and each.message ~= "" then
    return reason .. ": " .. each.message
  end
  return reason
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

local generation = obj.metadata.generation
if status.observedGeneration ~= nil and generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile generation " .. generation
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local reconciling = condition(status, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

local ready = condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

local suspendable = { Tenant = true, BackupSchedule = true, DatabaseMaintenance = true }
if ready.status == "True" and status.phase == "Suspended" and suspendable[obj.kind] then
  hs.status = "Suspended"
  hs.message = describe(ready)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
