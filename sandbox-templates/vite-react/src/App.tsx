export default function App() {
  return (
    <main className="flex min-h-screen items-center justify-center bg-background p-8 text-foreground">
      <div className="text-center">
        <h1 className="text-2xl font-semibold tracking-tight">Your app will appear here</h1>
        <p className="mt-2 text-muted-foreground">Describe what you want to build and CodeFlux writes it.</p>
      </div>
    </main>
  )
}
