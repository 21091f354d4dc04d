-- Argo CD health for every suborg.io kind, read from the Ready condition the controller
-- writes. See docs/argocd.md.
local hs = {}
local generation = obj.metadata and obj.metadata.generation
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the suborg controller"
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the suborg controller to see generation " .. generation
  return hs
end
for _, c in ipairs(status.conditions) do
  if c.type == "Ready" then
    local message = (c.reason or "") .. ": " .. (c.message or "")
    if c.status == "True" then
      hs.status = "Healthy"
    elseif c.status == "False" and (c.reason == "DependencyNotReady" or c.reason == "HasSubOrganizations") then
      -- Waiting on another object: that object says what is wrong.
      hs.status = "Progressing"
    elseif c.status == "False" or c.reason == "NotManaged" then
      -- A broken rule, a store conflict or an unreachable store, or an object outside the
      -- controller's selector: someone has to act.
      hs.status = "Degraded"
    else
      hs.status = "Progressing"
    end
    hs.message = message
    return hs
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
