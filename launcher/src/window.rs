//! `hearth open`: the app in a desktop window (winit), drawn by Servo with WebGPU on. Mouse,
//! wheel and keyboard go to the page; closing the window ends the program.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use servo::{
    Code, DevicePoint, InputEvent, Key, KeyState, KeyboardEvent, Location, Modifiers, MouseButton, MouseButtonAction,
    MouseButtonEvent, MouseMoveEvent, NamedKey, Preferences, RenderingContext, Servo, ServoBuilder, WebView,
    WebViewBuilder, WheelDelta, WheelEvent, WheelMode, WindowRenderingContext,
};
use winit::application::ApplicationHandler;
use winit::event::{ElementState, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, EventLoop, EventLoopProxy};
use winit::keyboard::{Key as WinitKey, ModifiersState, NamedKey as WinitNamed};
use winit::raw_window_handle::{HasDisplayHandle, HasWindowHandle};
use winit::window::{Window, WindowId};

/// Opens `url` in a window and runs until the window is closed.
pub fn open(url: &str) -> Result<(), String> {
    let url = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let event_loop =
        EventLoop::<Wake>::with_user_event().build().map_err(|e| format!("cannot open a window (no display?): {e}"))?;
    let proxy = event_loop.create_proxy();
    let mut app = App { url, proxy, state: None, error: None };
    event_loop.run_app(&mut app).map_err(|e| e.to_string())?;
    app.error.map_or(Ok(()), Err)
}

#[derive(Debug)]
struct Wake;

#[derive(Clone)]
struct Waker(EventLoopProxy<Wake>);

impl servo::EventLoopWaker for Waker {
    fn clone_box(&self) -> Box<dyn servo::EventLoopWaker> {
        Box::new(self.clone())
    }
    fn wake(&self) {
        let _ = self.0.send_event(Wake);
    }
}

struct State {
    window: Window,
    servo: Servo,
    rendering_context: Rc<WindowRenderingContext>,
    webview: RefCell<Option<WebView>>,
    cursor: Cell<DevicePoint>,
    modifiers: Cell<ModifiersState>,
}

impl servo::WebViewDelegate for State {
    fn notify_new_frame_ready(&self, _: WebView) {
        self.window.request_redraw();
    }

    fn notify_page_title_changed(&self, _: WebView, title: Option<String>) {
        self.window.set_title(title.as_deref().unwrap_or("Hearth"));
    }
}

struct App {
    url: url::Url,
    proxy: EventLoopProxy<Wake>,
    state: Option<Rc<State>>,
    error: Option<String>,
}

impl App {
    fn start(&mut self, event_loop: &ActiveEventLoop) -> Result<(), String> {
        let attributes = Window::default_attributes()
            .with_title("Hearth")
            .with_inner_size(winit::dpi::LogicalSize::new(1280.0, 900.0));
        let window = event_loop.create_window(attributes).map_err(|e| e.to_string())?;
        let display = event_loop.display_handle().map_err(|e| e.to_string())?;
        let handle = window.window_handle().map_err(|e| e.to_string())?;
        let rendering_context = Rc::new(
            WindowRenderingContext::new(display, handle, window.inner_size())
                .map_err(|e| format!("cannot draw into the window: {e:?}"))?,
        );
        let _ = rendering_context.make_current();
        let mut preferences = Preferences::default();
        preferences.dom_webgpu_enabled = true;
        preferences.network_http_proxy_uri = String::new();
        preferences.network_https_proxy_uri = String::new();
        let servo = ServoBuilder::default()
            .preferences(preferences)
            .event_loop_waker(Box::new(Waker(self.proxy.clone())))
            .build();
        let state = Rc::new(State {
            window,
            servo,
            rendering_context,
            webview: RefCell::new(None),
            cursor: Cell::new(DevicePoint::new(0.0, 0.0)),
            modifiers: Cell::new(ModifiersState::empty()),
        });
        let webview = WebViewBuilder::new(&state.servo, state.rendering_context.clone())
            .url(self.url.clone())
            .hidpi_scale_factor(euclid::Scale::new(state.window.scale_factor() as f32))
            .delegate(state.clone())
            .build();
        *state.webview.borrow_mut() = Some(webview);
        self.state = Some(state);
        Ok(())
    }
}

impl ApplicationHandler<Wake> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.state.is_none()
            && let Err(e) = self.start(event_loop)
        {
            self.error = Some(e);
            event_loop.exit();
        }
    }

    fn user_event(&mut self, _: &ActiveEventLoop, _: Wake) {
        if let Some(state) = &self.state {
            state.servo.spin_event_loop();
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _: WindowId, event: WindowEvent) {
        let Some(state) = self.state.clone() else { return };
        state.servo.spin_event_loop();
        let webview = state.webview.borrow();
        let Some(webview) = webview.as_ref() else { return };
        match event {
            WindowEvent::CloseRequested => event_loop.exit(),
            WindowEvent::RedrawRequested => {
                webview.paint();
                state.rendering_context.present();
            }
            WindowEvent::Resized(size) => webview.resize(size),
            WindowEvent::CursorMoved { position, .. } => {
                let point = DevicePoint::new(position.x as f32, position.y as f32);
                state.cursor.set(point);
                webview.notify_input_event(InputEvent::MouseMove(MouseMoveEvent::new(point.into())));
            }
            WindowEvent::MouseInput { state: pressed, button, .. } => {
                let button = match button {
                    winit::event::MouseButton::Left => MouseButton::Primary,
                    winit::event::MouseButton::Right => MouseButton::Secondary,
                    winit::event::MouseButton::Middle => MouseButton::Auxiliary,
                    winit::event::MouseButton::Back => MouseButton::Back,
                    winit::event::MouseButton::Forward => MouseButton::Forward,
                    winit::event::MouseButton::Other(n) => MouseButton::Other(n),
                };
                let action = match pressed {
                    ElementState::Pressed => MouseButtonAction::Down,
                    ElementState::Released => MouseButtonAction::Up,
                };
                let point = state.cursor.get().into();
                webview.notify_input_event(InputEvent::MouseButton(MouseButtonEvent::new(action, button, point)));
            }
            WindowEvent::MouseWheel { delta, .. } => {
                let (x, y, mode) = match delta {
                    MouseScrollDelta::LineDelta(dx, dy) => {
                        (f64::from(dx) * 76.0, f64::from(dy) * 76.0, WheelMode::DeltaLine)
                    }
                    MouseScrollDelta::PixelDelta(d) => (d.x, d.y, WheelMode::DeltaPixel),
                };
                let delta = WheelDelta { x, y, z: 0.0, mode };
                webview.notify_input_event(InputEvent::Wheel(WheelEvent::new(delta, state.cursor.get().into())));
            }
            WindowEvent::ModifiersChanged(modifiers) => state.modifiers.set(modifiers.state()),
            WindowEvent::KeyboardInput { event, .. } => {
                if let Some(key) = key_of(&event.logical_key) {
                    let key_state = match event.state {
                        ElementState::Pressed => KeyState::Down,
                        ElementState::Released => KeyState::Up,
                    };
                    let keyboard = KeyboardEvent::new_without_event(
                        key_state,
                        key,
                        Code::Unidentified,
                        Location::Standard,
                        modifiers_of(state.modifiers.get()),
                        event.repeat,
                        false,
                    );
                    webview.notify_input_event(InputEvent::Keyboard(keyboard));
                }
            }
            _ => {}
        }
    }
}

/// The keys the app needs: text, editing and navigation.
fn key_of(key: &WinitKey) -> Option<Key> {
    Some(match key {
        WinitKey::Character(text) => Key::Character(text.to_string()),
        WinitKey::Named(named) => Key::Named(match named {
            WinitNamed::Enter => NamedKey::Enter,
            WinitNamed::Backspace => NamedKey::Backspace,
            WinitNamed::Delete => NamedKey::Delete,
            WinitNamed::Tab => NamedKey::Tab,
            WinitNamed::Escape => NamedKey::Escape,
            WinitNamed::ArrowLeft => NamedKey::ArrowLeft,
            WinitNamed::ArrowRight => NamedKey::ArrowRight,
            WinitNamed::ArrowUp => NamedKey::ArrowUp,
            WinitNamed::ArrowDown => NamedKey::ArrowDown,
            WinitNamed::Home => NamedKey::Home,
            WinitNamed::End => NamedKey::End,
            WinitNamed::PageUp => NamedKey::PageUp,
            WinitNamed::PageDown => NamedKey::PageDown,
            WinitNamed::Space => return Some(Key::Character(" ".into())),
            _ => return None,
        }),
        _ => return None,
    })
}

fn modifiers_of(m: ModifiersState) -> Modifiers {
    let mut out = Modifiers::empty();
    out.set(Modifiers::SHIFT, m.shift_key());
    out.set(Modifiers::CONTROL, m.control_key());
    out.set(Modifiers::ALT, m.alt_key());
    out.set(Modifiers::META, m.super_key());
    out
}
